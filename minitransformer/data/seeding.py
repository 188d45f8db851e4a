"""One way to say "random, but reproducible" across the data layer.

Every function here that draws random numbers takes ``seed``: either an ``int``
(the same int always gives the same result) or a ``numpy.random.Generator`` that
the caller owns and advances (so one generator can drive several calls, e.g. one
per epoch). Data preparation is host-side work, so it uses NumPy's generator and
not the model's backend generator: reshuffling batches never changes dropout masks
or parameter initialisation, and the other way round.
"""

from __future__ import annotations

import numpy as np

Seed = int | np.random.Generator


def as_generator(seed: Seed) -> np.random.Generator:
    """``seed`` itself if it is a Generator, else a fresh PCG64 generator seeded with it."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(
            f"seed must be an int or a numpy.random.Generator, got {type(seed).__name__}"
        )
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed}")
    return np.random.default_rng(int(seed))
