"""Settings for the CUDA-simulator tests, which ``tests/test_cuda_kernels.py`` runs.

Numba reads ``NUMBA_ENABLE_CUDASIM`` once, when it is imported, so the main pytest process
(where other tests have imported Numba long before) cannot switch the simulator on. The
test files here therefore skip themselves unless it is set, and ``test_cuda_kernels.py``
runs this folder in a subprocess with ``NUMBA_ENABLE_CUDASIM=1``. To run them by hand:

    NUMBA_ENABLE_CUDASIM=1 pytest tests/cudasim
"""

from __future__ import annotations

import os
import sys

SIMULATOR_ON = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
SKIP_REASON = (
    "runs only under NUMBA_ENABLE_CUDASIM=1; tests/test_cuda_kernels.py runs it in a subprocess"
)

if SIMULATOR_ON:
    # The simulator runs each CUDA thread as a Python thread and, at every syncthreads(),
    # polls them in a loop that holds the GIL; with Python's default 5 ms switch interval
    # each barrier then costs about 5 ms. A 0.1 ms interval makes the tests ~10x faster.
    sys.setswitchinterval(1e-4)
