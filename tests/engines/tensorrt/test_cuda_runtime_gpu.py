"""The CUDA binding behind the TensorRT backend on a real GPU (no TensorRT needed): buffers, copies, stream, threads.

Skips where there is no CUDA GPU or no cuda-python; the same calls are checked against a fake runtime everywhere
(test_runtime_fake.py).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from engines.backends.cuda_runtime import open_cuda
from engines.errors import BackendUnavailable
from tests import needs

pytestmark = needs.cuda_python


@pytest.mark.timeout(60)
def test_bytes_make_the_round_trip_through_device_memory_from_any_thread():
    cuda = open_cuda(0)
    try:
        assert cuda.cc.isdigit() and cuda.gpu_name
        n = 1 << 20
        src, back = cuda.host_alloc(n, np.float32), cuda.host_alloc(n, np.float32)
        dev = cuda.device_alloc(n * 4)
        src[:] = np.arange(n, dtype=np.float32)
        cuda.htod(dev, src, n * 4)
        cuda.dtoh(back, dev, n * 4)
        cuda.sync()
        np.testing.assert_array_equal(back, src)

        errors: list[BaseException] = []

        def other_thread() -> None:
            try:
                cuda.activate()
                back[:] = 0
                cuda.dtoh(back, dev, n * 4)
                cuda.sync()
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join(30)
        assert not errors and float(back[-1]) == n - 1
    finally:
        cuda.close()
        cuda.close()


def test_a_device_that_is_not_there_is_one_line():
    with pytest.raises(BackendUnavailable, match=r"no CUDA device 999 \(the CUDA runtime sees \d+\)"):
        open_cuda(999)
