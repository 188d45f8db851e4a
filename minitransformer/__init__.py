"""minitransformer: a from-scratch transformer framework for learning.

Usage::

    import minitransformer as mt
    from minitransformer import nn, optim, functional as F
"""

from . import backend, functional, nn, optim
from .autograd import (
    GradcheckError,
    Tensor,
    arange,
    enable_grad,
    gradcheck,
    is_grad_enabled,
    no_grad,
    ones,
    rand,
    randn,
    tensor,
    zeros,
)
from .backend import get_default_dtype, gpu_available, manual_seed, set_default_dtype
from .pipeline import pipeline
from .serialization import load, load_metadata, save

__version__ = "0.1.0"

__all__ = [
    "GradcheckError",
    "Tensor",
    "__version__",
    "arange",
    "backend",
    "enable_grad",
    "functional",
    "get_default_dtype",
    "gpu_available",
    "gradcheck",
    "load",
    "load_metadata",
    "nn",
    "optim",
    "pipeline",
    "save",
    "is_grad_enabled",
    "manual_seed",
    "no_grad",
    "ones",
    "rand",
    "randn",
    "set_default_dtype",
    "tensor",
    "zeros",
]
