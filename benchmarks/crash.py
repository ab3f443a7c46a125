"""Crash benchmark: 50 ``kill -9`` injections into tiny sessions, then ``nas resume``.

The same machinery as ``tests/reliability/test_crash.py`` (``crash_harness.py``): real
``nas run`` / ``nas resume`` processes forked from a fork server that imported the CLI
once, training with ``fake_trainer.py`` (``--trainer real`` for the torch trainer: much
slower). Kill instants come from ``random.Random(--seed)``. Two kinds of injection:

- ``kill -9 nas``: the session process dies at a random instant (uniform in
  ``[0, --max-delay]`` s after its start); the next ``nas resume`` continues; after the
  last one the budget must be complete. Each campaign's committed configs are compared
  with an uninterrupted session of the same budget.
- ``kill -9 trainer``: only the trainer subprocess dies; the session records the run as
  interrupted, rejects it and goes on.

Every check of ``crash_harness.py`` runs after each kill and after each final resume.
The table counts injections, resumes that went on without error, runs recomputed (a run
left unjudged because the process died while it trained), and violations (listed).

Usage::

    python benchmarks/crash.py                      # 50 injections, ~3 min on 2 busy cores
    python benchmarks/crash.py --injections 10 --seed 3
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "reliability"))

from crash_harness import Campaign, CampaignResult  # noqa: E402
from forkserver_client import ForkServer, stop_stragglers  # noqa: E402

PER_CAMPAIGN = 8
TRAINER_SHARE = 0.2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--injections", type=int, default=50, help="kills in all")
    parser.add_argument("--seed", type=int, default=20260601, help="seed of the kill instants")
    parser.add_argument("--max-delay", type=float, default=2.0,
                        help="a kill of nas lands uniformly in [0, this] s after its start")
    parser.add_argument("--trainer", choices=("fake", "real"), default="fake")
    parser.add_argument("--epoch-seconds", type=float, default=0.1,
                        help="the fake trainer's time per epoch")
    return parser.parse_args(argv)


def campaigns(server: ForkServer, work: Path, args: argparse.Namespace
              ) -> tuple[CampaignResult, CampaignResult]:
    """Run the main-process and trainer campaigns; return their results."""
    rng = random.Random(args.seed)
    trainer_kills = round(args.injections * TRAINER_SHARE)
    main, trainers = CampaignResult(), CampaignResult()
    number = 0
    while main.injections < args.injections - trainer_kills:
        number += 1
        want = min(PER_CAMPAIGN, args.injections - trainer_kills - main.injections)
        campaign = Campaign(server, work / f"main{number}", rng, iters=4,
                            max_delay=args.max_delay)
        state = campaign.kill_main(want, main, campaign.init())
        campaign.compare_with_reference(main, state, work / f"reference{number}")
        print(f"  campaign {number}: {main.injections} kills so far", flush=True)
    while trainers.injections < trainer_kills:
        number += 1
        campaign = Campaign(server, work / f"trainer{number}", rng, iters=6)
        campaign.kill_trainers(min(5, trainer_kills - trainers.injections), trainers,
                               campaign.init())
    return main, trainers


def table(rows: list[tuple[str, CampaignResult]]) -> str:
    lines = ["| injection | injections | resumed ok | runs recomputed | violations |",
             "|---|---:|---:|---:|---:|"]
    total = CampaignResult()
    for name, result in rows:
        total.add(result)
        lines.append(f"| {name} | {result.injections} | {result.resumed_ok} | "
                     f"{result.recomputed} | {len(result.violations)} |")
    lines.append(f"| **total** | {total.injections} | {total.resumed_ok} | {total.recomputed} "
                 f"| {len(total.violations)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nas-crash-") as temp:
        work = Path(temp)
        pid_dir = work / "trainer-pids"
        pid_dir.mkdir()
        server = ForkServer(args.trainer, env={"FAKE_TRAINER_PID_DIR": str(pid_dir),
                                               "FAKE_TRAINER_EPOCH_S": str(args.epoch_seconds)})
        try:
            main_result, trainer_result = campaigns(server, work, args)
        finally:
            server.close()
            stop_stragglers(pid_dir)
    print()
    print(table([("kill -9 `nas run`/`nas resume`", main_result),
                 ("kill -9 trainer only", trainer_result)]))
    phases = ", ".join(f"{phase} {count}" for phase, count in sorted(main_result.phases.items()))
    print(f"\nwhere the nas kills landed: {phases}")
    print(f"sessions that finished before their kill (budget extended): "
          f"{main_result.finished_early}")
    print(f"orphan trials in the studies (a kill inside study.ask): {main_result.orphan_trials}")
    for line in main_result.reference_divergences:
        print(f"divergence from an uninterrupted session: {line}")
    for line in main_result.violations + trainer_result.violations:
        print(f"VIOLATION: {line}")
    print(f"seconds: {time.monotonic() - started:.0f} (trainer: {args.trainer}, seed {args.seed})")
    return 1 if main_result.violations or trainer_result.violations else 0


if __name__ == "__main__":
    sys.exit(main())
