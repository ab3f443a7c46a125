"""The ``hybrid`` brain: TPE proposes, the LLM keeps or overrides the proposal.

Each iteration the TPE study asks a trial; the LLM planner sees that proposal, the best
configs so far and the recent trials, and either applies it unchanged or edits its own
candidate. Every trial is told to the study: a kept proposal with its result, an
overridden one as FAIL (it was not trained) plus the config actually trained as a trial
of its own (see ``study.py``). The first proposal of a workspace is the starting config
itself (the baseline): the LLM keeps it by launching the training without an edit.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from optuna.trial import TrialState

from informer_nas.agents.brains.llm import llm_provider
from informer_nas.agents.brains.optimizer import study_brain
from informer_nas.agents.brains.study import StudyBrain
from informer_nas.agents.evaluator import AgentEvaluator
from informer_nas.agents.planner import AgentPlanner
from informer_nas.informer.config import read_config_literal
from informer_nas.nas_system.brain import Budget, Evaluator, Planner
from informer_nas.nas_system.context import ToolContext
from informer_nas.nas_system.records import RunRecord
from informer_nas.nas_system.search_space import flatten

if TYPE_CHECKING:
    from informer_nas.agents.wiring import BrainSpec

BEST_CONFIGS = 3

HYBRID_PROMPT = """\
Iteration {iteration} of {max_iterations}.
The TPE optimizer proposes these changes to the incumbent (trial {trial}):
{proposal}
The incumbent's values of these keys now: {current}
Best configs so far (tunable values and val MSE):
{best}
Either keep the proposal (call edit_config with exactly these changes) or override it
with a change you expect to do better, saying why in the rationale. Then launch the
training once and answer with your decision.
"""

HYBRID_UNCHANGED_PROMPT = """\
Iteration {iteration} of {max_iterations}.
The TPE optimizer proposes the incumbent config itself, unchanged (trial {trial}): its
sample equals the incumbent in every searched key, so keeping it retrains the incumbent
with this iteration's seed.
Best configs so far (tunable values and val MSE):
{best}
Either keep the proposal (launch the training without calling edit_config) or override
it with a change you expect to do better, saying why in the rationale. Then launch the
training once and answer with your decision.
"""

HYBRID_BASELINE_PROMPT = """\
Iteration {iteration} of {max_iterations}.
The TPE optimizer proposes the starting config itself, unchanged, as the baseline
(trial {trial}): nothing has been trained yet.
Either keep the baseline (launch the training without calling edit_config) or override
it with a change you expect to do better, saying why in the rationale. Then launch the
training once and answer with your decision.
"""


def best_trials(brain: StudyBrain, count: int = BEST_CONFIGS) -> list[dict[str, Any]]:
    """The ``count`` best completed trials: their values and parameters."""
    trials = brain.study().get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ranked = sorted(trials, key=lambda t: t.value if t.value is not None else float("inf"))
    return [{"trial": t.number, "val_mse": t.value, "params": t.params} for t in ranked[:count]]


def hybrid_prompt(brain: StudyBrain) -> Any:
    """The prompt builder: asks the study for this iteration's proposal."""

    def prompt(ctx: ToolContext, budget: Budget) -> str:
        config = read_config_literal(ctx.workspace.paths.config)
        proposal = brain.propose(ctx.state, config)
        if proposal.baseline and not proposal.changes:
            return HYBRID_BASELINE_PROMPT.format(
                iteration=budget.iteration, max_iterations=budget.max_iterations,
                trial=proposal.trial_number)
        best = json.dumps(best_trials(brain)) if proposal.completed_trials else "none yet"
        if not proposal.changes:  # edit_config refuses an empty edit
            return HYBRID_UNCHANGED_PROMPT.format(
                iteration=budget.iteration, max_iterations=budget.max_iterations,
                trial=proposal.trial_number, best=best)
        changes = [change.model_dump() for change in proposal.changes]
        incumbent = flatten(config)  # what each change replaces, so that it can be judged
        current = {change.key: incumbent.get(change.key) for change in proposal.changes}
        return HYBRID_PROMPT.format(
            iteration=budget.iteration, max_iterations=budget.max_iterations,
            trial=proposal.trial_number, proposal=json.dumps(changes),
            current=json.dumps(current), best=best,
        )

    return prompt


def hybrid_brain(spec: BrainSpec) -> tuple[Planner, Evaluator]:
    """The hybrid planner (TPE + LLM) and the LLM evaluator."""
    provider = llm_provider(spec)
    brain = study_brain("tpe", spec.workspace, spec.settings, spec.search_space)

    def sync(ctx: ToolContext, _: Budget | RunRecord | None) -> None:
        brain.sync(ctx.state)

    def record_proposal(ctx: ToolContext, record: RunRecord | None) -> None:
        brain.sync(ctx.state)
        if record is not None:  # shown by nas status and the report
            record.proposal = "overridden" if brain.overridden(record.iteration) else "kept"
            ctx.save()

    planner = AgentPlanner("hybrid", provider, spec.binding, tracing=spec.tracing,
                           prompt=hybrid_prompt(brain), before=sync, after=record_proposal)
    evaluator = AgentEvaluator(provider, spec.binding, max_turns=spec.settings.max_turns,
                               tracing=spec.tracing)
    return planner, evaluator
