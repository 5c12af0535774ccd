"""Is there an NVIDIA GPU here at all? Asked of the CUDA driver itself, before any GPU package is imported.

The TensorRT backend needs a GPU, TensorRT and cuda-python. On a machine with no
GPU, "pip install cuda-python" would be the wrong advice: the answer is the CPU default. Only the driver library
(``libcuda``, installed with the NVIDIA driver) knows, so it is asked through ctypes: no context is made
(``cuInit`` and ``cuDeviceGetCount`` only), nothing is imported.
"""

from __future__ import annotations

import ctypes
import functools
import sys

_DRIVER = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"


@functools.cache
def cuda_gpus() -> int:
    """How many CUDA devices the driver sees: 0 without a driver, without a device, or if it cannot start."""
    try:
        driver = ctypes.CDLL(_DRIVER)
    except OSError:
        return 0
    count = ctypes.c_int(0)
    try:
        if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
    except AttributeError:  # not a CUDA driver library
        return 0
    return count.value
