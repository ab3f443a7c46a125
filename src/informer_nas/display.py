"""The terminal display of a session: a rich Live panel fed by observer events.

Two event streams arrive through one callback, each a dict with an ``"event"`` key:
the session loop's (``iteration_start``, ``candidate``, ``progress`` wrapping a trainer
event, ``plan``, ``verdict``, ``planning_failure``, ``resume_evaluation``, ``session_end``)
and the trainer's JSON lines (``start``, ``step``, ``epoch``, ``done``, ``failed``; see the
trainer contract), which ``nas train`` passes directly. Unknown events and missing
fields are ignored: the display must never stop a session.

Every event is scrubbed of the secrets (API keys, the endpoint URL's credentials) before it
is drawn, as the records are: a model that echoes a key shows ``[REDACTED]``. A model's text
(a plan, a reason, an error quoting it) is one line, cut to the terminal's width, unless
verbose; the records keep it whole.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from informer_nas.log_setup import Verbosity
from informer_nas.nas_system.secrets import scrub, secret_values
from informer_nas.nas_system.status import format_changes, format_mse

logger = logging.getLogger(__name__)

Event = Mapping[str, Any]

_VERDICT_STYLES = {"accept": "bold green", "reject": "red", "borderline": "yellow"}


def _one_line(text: Text) -> Text:
    """A copy cut to the terminal's width (the full text is printed above the panel)."""
    line = text.copy()
    line.no_wrap, line.overflow = True, "ellipsis"
    return line


def _flat(value: Any) -> str:
    """A model's text on one line (its newlines and runs of spaces made single spaces)."""
    return " ".join(str(value or "").split())


class SessionDisplay:
    """Draws a session's progress; call it with each event.

    Args:
        console: where to draw (stdout's console in the CLI).
        verbosity: ``quiet`` prints nothing while running; ``normal`` shows the live panel
            and one line per iteration; ``verbose`` adds one line per epoch and the planner's
            reasons.
        max_iterations: the iteration budget, when known before the first iteration.
        planner: the brain's name, for the header.
        show_session: draw the iteration, plan, verdict and incumbent lines (False for
            ``nas train``, which has only a trainer).
        secrets: the values never to show; None to read them now (environment and
            ``./.env``, as the log handlers do).
    """

    def __init__(
        self,
        console: Console,
        verbosity: Verbosity = "normal",
        max_iterations: int | None = None,
        planner: str = "",
        show_session: bool = True,
        secrets: Sequence[str] | None = None,
    ) -> None:
        self.console = console
        self.secrets = tuple(secret_values() if secrets is None else secrets)
        self.verbosity = verbosity
        self.iteration: int | None = None
        self.max_iterations = max_iterations
        self.planner = planner
        self.show_session = show_session
        self.plan_line = Text("waiting for the planner…", style="dim")
        self.verdict_line = Text("")
        self.incumbent_line = Text("incumbent: none yet", style="dim")
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self._epoch_task = self.progress.add_task("epochs", total=None, info="", visible=False)
        self._step_task = self.progress.add_task("steps ", total=None, info="", visible=False)
        self._live: Live | None = None

    def __enter__(self) -> SessionDisplay:
        if self.verbosity != "quiet":
            self._live = Live(self, console=self.console, refresh_per_second=4, transient=True)
            self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, traceback)
            self._live = None

    def __rich__(self) -> RenderableType:
        if not self.show_session:
            return self.progress
        header = Text.assemble(
            ("iteration ", "bold"),
            (self._iteration_text(), "bold cyan"),
            (f"  planner {self.planner}" if self.planner else "", "dim"),
        )
        lines = [_one_line(line) for line in (self.plan_line, self.verdict_line)]
        return Group(header, lines[0], self.progress, lines[1], self.incumbent_line)

    def __call__(self, event: Event) -> None:
        """Update the display from one session or trainer event."""
        handler = getattr(self, f"_on_{event.get('event')}", None)
        if handler is None:
            return
        try:
            handler(scrub(event, self.secrets) if self.secrets else event)
        except (TypeError, ValueError, KeyError) as exc:  # a malformed event: never fatal
            logger.debug("display ignored event %r: %s", event, exc)

    def _iteration_text(self) -> str:
        if self.iteration is None:
            return "-"
        total = f"/{self.max_iterations}" if self.max_iterations else ""
        return f"{self.iteration}{total}"

    def _print(self, renderable: RenderableType, *, level: Verbosity = "normal") -> None:
        rank = {"quiet": 0, "normal": 1, "verbose": 2}
        if rank[self.verbosity] >= rank[level]:
            self.console.print(renderable)

    def _print_model_text(self, line: Text) -> None:
        """A line holding a model's text: whole when verbose, else cut to one line."""
        if self.verbosity == "verbose":
            self._print(line)
        elif self.verbosity == "normal":
            self.console.print(line, no_wrap=True, overflow="ellipsis")

    # Session events (nas_system.session.run_session's observer) ----------------------

    def _on_iteration_start(self, event: Event) -> None:
        self.iteration = int(event["iteration"])
        self.max_iterations = event.get("max_iterations") or self.max_iterations
        self.plan_line = Text("planning…", style="dim")
        self.verdict_line = Text("")
        self._reset_progress()

    def _on_candidate(self, event: Event) -> None:
        self.plan_line = Text.assemble((f"{event.get('run_id', 'candidate')}: ", "bold"),
                                       format_changes(event.get("changes"), short=True))
        if event.get("rationale"):
            self.plan_line.append(f"  ({_flat(event['rationale'])})", style="dim")
        self._print(Text.assemble((f"[{self._iteration_text()}] ", "dim"), self.plan_line),
                    level="verbose")

    def _on_progress(self, event: Event) -> None:
        trainer_event = event.get("trainer_event")
        if isinstance(trainer_event, Mapping) and trainer_event.get("event") != "progress":
            self({"run_id": event.get("run_id"), **trainer_event})

    def _on_plan(self, event: Event) -> None:
        if event.get("failure"):
            return  # a planning_failure event follows or the verdict tells
        line = Text.assemble((f"{event.get('step_type') or 'plan'}: ", "bold magenta"),
                             _flat(event.get("plan")))
        if event.get("reason"):
            line.append(f"  ({_flat(event['reason'])})", style="dim")
        self.plan_line = line
        self._print_model_text(Text.assemble((f"[{self._iteration_text()}] planner ", "dim"),
                                             line))

    def _on_planning_failure(self, event: Event) -> None:
        self.verdict_line = Text(f"no candidate: {_flat(event.get('reason'))}", style="yellow")
        self._print_model_text(Text.assemble((f"[{self._iteration_text()}] ", "dim"),
                                             self.verdict_line))

    def _on_resume_evaluation(self, event: Event) -> None:
        self._print(Text(f"evaluating {event.get('run_id')}, finished before the interruption",
                         style="dim"))

    def _on_verdict(self, event: Event) -> None:
        verdict = str(event.get("verdict") or "-")
        accepted = "accepted" if event.get("accepted") else "rejected"
        self.verdict_line = Text.assemble(
            (f"{event.get('run_id', '')} ", "bold"),
            (f"{accepted} ({verdict})", "bold green" if event.get("accepted") else "red"),
            f"  val MSE {format_mse(event.get('val_mse'))}",
            (f"  {_flat(event.get('reason'))}", "dim"),
        )
        self._print_model_text(Text.assemble((f"[{self._iteration_text()}] ", "dim"),
                                             self.verdict_line))
        if event.get("incumbent_run_id"):
            self.incumbent_line = Text.assemble(
                ("incumbent ", "bold"), (str(event["incumbent_run_id"]), "bold green"),
                f"  val MSE {format_mse(event.get('incumbent_val_mse'))}",
            )

    def _on_session_end(self, event: Event) -> None:
        self._reset_progress()
        self._print(Text(f"session ended: {event.get('stopped_by', '')}", style="dim"),
                    level="verbose")

    # Trainer events ---------------------------------------------------------------------

    def _reset_progress(self) -> None:
        for task in (self._epoch_task, self._step_task):
            self.progress.update(task, completed=0, total=None, info="", visible=False)

    def _on_start(self, event: Event) -> None:
        self.progress.update(self._epoch_task, total=event.get("max_epochs"), completed=0,
                             visible=True, info=f"{event.get('n_params', '?')} params "
                             f"on {event.get('device', '?')}")
        self.progress.update(self._step_task, total=event.get("steps_per_epoch"), completed=0,
                             visible=True, info="")

    def _on_step(self, event: Event) -> None:
        self.progress.update(self._step_task, completed=event.get("step", 0),
                             total=event.get("steps"), visible=True,
                             info=f"loss {format_mse(event.get('loss'))}")

    def _on_epoch(self, event: Event) -> None:
        epoch = int(event["epoch"])
        self.progress.update(self._epoch_task, completed=epoch, total=event.get("max_epochs"),
                             info=f"val MSE {format_mse(event.get('val_mse'))}")
        self.progress.update(self._step_task, completed=0)
        self._print(Text(f"  epoch {epoch}/{event.get('max_epochs', '?')}  train loss "
                         f"{format_mse(event.get('train_loss'))}  val MSE "
                         f"{format_mse(event.get('val_mse'))}  test MSE "
                         f"{format_mse(event.get('test_mse'))}", style="dim"), level="verbose")

    def _on_done(self, event: Event) -> None:
        self.progress.update(self._epoch_task, info=f"done: val MSE "
                             f"{format_mse(event.get('val_mse'))}")

    def _on_failed(self, event: Event) -> None:
        # printed when the training ends, before the planner's line of the same iteration:
        # the iteration and the run say which it is
        run = f"{event['run_id']} " if event.get("run_id") else ""
        where = f"[{self._iteration_text()}] " if self.iteration is not None else "  "
        status = event.get("status", "failed")
        self._print(Text.assemble((where, "dim"),
                                  (f"{run}training {status}: {event.get('reason', '')}", "red")))
