"""Small elementwise CPU kernels that NumPy lacks.

``erf`` is not in NumPy (SciPy has it, but SciPy is not a dependency), and the exact
GELU, ``x * (1 + erf(x / sqrt(2))) / 2``, needs it to full float64 precision to match
BERT's reference implementation. Numba compiles ``math.erf`` into a ufunc.
"""

import math

import numpy as np
from numba import vectorize

from ._numba import CACHE


@vectorize(["float32(float32)", "float64(float64)"], cache=CACHE)
def _erf(x):
    return math.erf(x)


def erf_cpu(x: np.ndarray) -> np.ndarray:
    """Elementwise error function of a float32 or float64 NumPy array."""
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    return _erf(x)
