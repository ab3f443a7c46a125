"""The Optuna plumbing of the study brain: the study's name, the journal's lock, the
search space as Optuna distributions, and the sampler created (and seeded) for each ask.

``study.StudyBrain`` builds one ``JournalStorage`` with ``HeldByWorkspace`` as its lock and
asks with a fresh ``make_sampler`` seeded ``sampler_seed(base_seed, n)``; the samplers of
one brain share one intersection search space (``share_search_space``).
"""

from __future__ import annotations

from typing import Literal

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.search_space import IntersectionSearchSpace

from informer_nas.nas_system.search_space import SearchSpace
from informer_nas.nas_system.seeds import SAMPLER, derived_seed

STUDY_NAME = "informer-nas"
SamplerName = Literal["tpe", "random"]


def distributions(space: SearchSpace) -> dict[str, BaseDistribution]:
    """The Optuna distribution of every tunable key, in the space's order."""
    result: dict[str, BaseDistribution] = {}
    for param in space:
        if param.kind == "bool":
            result[param.name] = CategoricalDistribution(param.values)
        elif param.kind == "categorical":
            result[param.name] = CategoricalDistribution(param.choices)
        elif param.kind == "int":
            assert param.low is not None and param.high is not None
            step = int(param.step) if param.step and not param.log else 1
            result[param.name] = IntDistribution(int(param.low), int(param.high), log=param.log,
                                                 step=step)
        else:
            assert param.low is not None and param.high is not None
            result[param.name] = FloatDistribution(param.low, param.high, log=param.log,
                                                   step=None if param.log else param.step)
    return result


# TPE samples at random until this many trials finished. Optuna's default (10) spends half
# of a 20-trial budget, the budget this product is sized for (``nas run --iters 20``), on
# random search; 5 start-up trials plus the enqueued baseline leave 14 guided trials.
TPE_STARTUP_TRIALS = 5


class HeldByWorkspace:
    """The study journal's lock: none beyond the workspace lock a session holds (``flock``,
    freed when its holder dies), the only writer. Optuna's default, a symlink next to the
    journal, outlives a SIGKILL: every later session then waited 30 s for it to go stale."""

    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        return None


def sampler_seed(base_seed: int, number: int) -> int:
    """The sampler's seed for the ``number``-th tagged trial (``seeds.derived_seed``)."""
    return derived_seed(base_seed, SAMPLER, number)


def make_sampler(name: SamplerName, seed: int) -> optuna.samplers.BaseSampler:
    """A fresh sampler for one ask (TPE with ``TPE_STARTUP_TRIALS``, or uniform random)."""
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=TPE_STARTUP_TRIALS)
    return optuna.samplers.RandomSampler(seed=seed)


def share_search_space(sampler: optuna.samplers.BaseSampler,
                       shared: IntersectionSearchSpace | None) -> IntersectionSearchSpace | None:
    """Give ``sampler`` the intersection search space ``shared`` (None: keep its own); return
    the one it now uses (None for a sampler without one: random).

    Multivariate TPE (Optuna 5's default) intersects the distributions of every finished
    trial before each ask; its ``IntersectionSearchSpace`` caches the result and then reads
    only the trials added since. A fresh sampler per ask starts with an empty cache and
    re-reads the whole history, every ask: a proposal took 47 ms of CPU after 500 trials
    and 82 ms after 1,000, against 23 and 33 ms with the cache shared
    (``benchmarks/tpe_ask.py``, BENCHMARKS.md). Optuna's cache gives the intersection a
    full read gives, so proposals are unchanged; a sampler without the (private) attribute
    keeps its own.
    """
    own = getattr(sampler, "_search_space", None)
    if not isinstance(own, IntersectionSearchSpace):
        return None
    if shared is None:
        return own
    sampler._search_space = shared  # type: ignore[attr-defined]
    return shared
