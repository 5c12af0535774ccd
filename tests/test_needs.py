"""The shared ``needs`` markers: a condition is looked up by name, an unmet one gives the skip reason."""

from __future__ import annotations

import pytest

from tests import needs


class Item:
    def __init__(self, *marks: pytest.MarkDecorator) -> None:
        self.marks = [m.mark for m in marks]

    def iter_markers(self, name: str):
        return (m for m in self.marks if m.name == name)


def test_the_first_unmet_need_is_the_reason(monkeypatch):
    monkeypatch.setitem(needs.CONDITIONS, "cuda", lambda: "needs a CUDA GPU that PyTorch can use")
    monkeypatch.setitem(needs.CONDITIONS, "tensorrt", lambda: None)
    assert needs.why_skip(Item(needs.tensorrt)) is None
    assert needs.why_skip(Item(needs.tensorrt, needs.cuda)) == "needs a CUDA GPU that PyTorch can use"
    assert needs.why_skip(Item()) is None


def test_opposite_needs_never_both_hold():
    """An engine either can execute here or not: exactly one of the two runs anywhere."""
    assert (needs.CONDITIONS["tensorrt_gpu"]() is None) != (needs.CONDITIONS["no_tensorrt_gpu"]() is None)


def test_an_unknown_need_is_refused():
    with pytest.raises(ValueError, match="unknown need 'gpu'"):
        needs.why_skip(Item(pytest.mark.needs("gpu")))
