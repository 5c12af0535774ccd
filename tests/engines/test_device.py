"""The one device-string parser: every accepted form, and the one line for anything else."""

from __future__ import annotations

import pytest

from engines.device import BadDevice, Device, parse_device


@pytest.mark.parametrize(("text", "kind", "index", "shown"), [
    ("auto", "auto", 0, "auto"), ("cpu", "cpu", 0, "cpu"), ("CPU ", "cpu", 0, "cpu"),
    ("cuda", "cuda", 0, "cuda:0"), ("cuda:3", "cuda", 3, "cuda:3"),
])
def test_accepted_forms(text: str, kind: str, index: int, shown: str):
    device = parse_device(text)
    assert (device.kind, device.index, str(device)) == (kind, index, shown)
    assert device.is_cpu == (kind == "cpu") and device.wants_cuda == (kind == "cuda")


@pytest.mark.parametrize("text", ["gpu", "cuda:", "cuda:x", "cuda0", "cuda:-1", "", "tpu:0"])
def test_anything_else_is_one_line_naming_the_forms(text: str):
    with pytest.raises(BadDevice) as info:
        parse_device(text)
    assert str(info.value) == f"device {text!r} is not valid: use auto, cpu, cuda or cuda:N"
    assert isinstance(info.value, ValueError)  # callers outside engines may catch it as bad input


def test_devices_compare_by_value():
    assert parse_device("cuda") == parse_device("cuda:0") == Device("cuda", 0)
