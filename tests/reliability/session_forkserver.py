"""A fork server for ``nas`` commands: import once, fork one process per command.

Importing the Agents SDK takes seconds on a loaded machine; a crash test that starts
``nas run`` / ``nas resume`` twenty times would spend most of its time importing. This
server imports ``informer_nas.cli`` and everything a session imports, then, for each
request, forks a child that runs the real Typer app (``nas <argv>``) exactly as the
``nas`` script does; the test kills that child with SIGKILL like any ``nas`` process.

Protocol (JSON lines): the client writes ``{"argv": [...], "cwd": DIR, "log": FILE,
"err_log": FILE or null (stderr; default: the log), "unset": [NAME], "env": {...}}``
(variables unset, then set); the
server answers ``{"pid": N}`` at once and ``{"exited": N, "code": C}`` when the child ends
(C is negative for a signal, as in ``subprocess``). EOF on stdin stops the server.

With ``--trainer fake`` the children train with ``fake_trainer.py`` instead of the real
trainer module (the executor's only seam the CLI reaches: the default ``python_args`` of
``LocalSubprocessExecutor``).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import traceback
from pathlib import Path
from typing import Any

FAKE_TRAINER = Path(__file__).with_name("fake_trainer.py")


def use_fake_trainer(script: Path = FAKE_TRAINER) -> None:
    """Make ``LocalSubprocessExecutor()`` run ``script`` (in this process and its forks)."""
    import informer_nas.nas_system.local_executor as executor

    class FakeTrainerExecutor(executor.LocalSubprocessExecutor):
        def __init__(self, python_args: Any = (str(script),), grace_s: float = 2.0,
                     poll_s: float = 0.05) -> None:
            super().__init__(python_args, grace_s, poll_s)

    executor.LocalSubprocessExecutor = FakeTrainerExecutor  # type: ignore[misc]


def preload() -> None:
    """Import what a session imports, so that each fork starts in milliseconds."""
    import agents  # noqa: F401
    import optuna  # noqa: F401

    import informer_nas.agents.brains.llm  # noqa: F401
    import informer_nas.agents.brains.tpe  # noqa: F401
    import informer_nas.agents.wiring  # noqa: F401
    import informer_nas.api  # noqa: F401
    import informer_nas.cli  # noqa: F401
    import informer_nas.display  # noqa: F401
    import informer_nas.nas_system.report  # noqa: F401
    import informer_nas.nas_system.session  # noqa: F401
    import informer_nas.nas_system.status  # noqa: F401
    import informer_nas.tools.launch_training  # noqa: F401


def child(request: dict[str, Any]) -> None:
    """In the fork: run ``nas <argv>`` and exit with its code (never returns)."""
    code = 1
    try:
        out = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        err = request.get("err_log")
        os.dup2(out, 1)
        os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if err else out, 2)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.chdir(request["cwd"])
        for name in request.get("unset", []):
            os.environ.pop(name, None)
        os.environ.update(request.get("env", {}))
        from informer_nas.cli import app

        sys.argv = ["nas", *request["argv"]]
        app(args=request["argv"], prog_name="nas")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def reap(children: set[int]) -> None:
    for pid in list(children):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            children.discard(pid)
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            reply({"exited": pid, "code": code})


def serve() -> None:
    children: set[int] = set()
    stdin = sys.stdin.buffer
    buffer = b""
    while True:
        ready, _, _ = select.select([stdin], [], [], 0.02)
        reap(children)
        if not ready:
            continue
        data = os.read(stdin.fileno(), 65536)
        if not data:
            break
        buffer += data
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            request = json.loads(line)
            pid = os.fork()
            if pid == 0:
                child(request)
            children.add(pid)
            reply({"pid": pid})
    for pid in children:
        os.waitpid(pid, 0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trainer", choices=("fake", "real"), default="fake")
    args = parser.parse_args()
    preload()
    if args.trainer == "fake":
        use_fake_trainer()
    reply({"ready": os.getpid()})
    serve()


if __name__ == "__main__":
    main()
