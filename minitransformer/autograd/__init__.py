"""The autograd tape (``tape.py``), the op pattern (``function.py``), the primitive ops
(``ops.py``), ``Tensor`` (``tensor.py``) and ``gradcheck`` (``gradcheck.py``)."""

from .gradcheck import GradcheckError, gradcheck
from .tape import enable_grad, is_grad_enabled, no_grad
from .tensor import Tensor, arange, ones, rand, randn, tensor, zeros

__all__ = [
    "GradcheckError",
    "Tensor",
    "arange",
    "enable_grad",
    "gradcheck",
    "is_grad_enabled",
    "no_grad",
    "ones",
    "rand",
    "randn",
    "tensor",
    "zeros",
]
