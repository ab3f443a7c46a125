"""Seeds derived from a session's base seed, one stream per use.

Each seed is drawn from ``numpy.random.SeedSequence([base, stream, index])``, which hashes
its entropy: base seeds 1 and 2 give unrelated searches. (Adding the index to the base, as
this project first did, made the search of seed 2 the search of seed 1 shifted by one
trial: the same configs, trained with the same seeds.)
"""

from __future__ import annotations

import numpy as np

MAX_SEED = 2**31 - 1  # the bound of training.seed and of the session's base seed

SAMPLER = 0  # the study's sampler for its n-th tagged trial
TRAINING = 1  # the main training seed of iteration n
CONFIRMATION = 2  # the k-th confirmation seed


def derived_seed(base: int, stream: int, index: int) -> int:
    """A seed in ``[0, MAX_SEED]`` for ``index`` in ``stream``, from the base seed."""
    state = np.random.SeedSequence([base, stream, index]).generate_state(1, dtype=np.uint32)
    return int(state[0]) % (MAX_SEED + 1)
