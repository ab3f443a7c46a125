"""Client of ``session_forkserver.py``: start ``nas`` commands, wait for them, kill them.

Also finds a session's trainer subprocess (``children_of``) and stops fake trainers a
test left behind (``stop_stragglers``: only those that wrote their pid file, by pid).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

FORKSERVER = Path(__file__).resolve().with_name("session_forkserver.py")


class ForkServer:
    """Client of ``session_forkserver.py``: spawn ``nas`` commands, wait, kill.

    Args:
        trainer: ``fake`` (``fake_trainer.py``) or ``real`` (the torch trainer).
        env: extra environment of the server (inherited by every command).
    """

    def __init__(self, trainer: str = "fake", env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(FORKSERVER), "--trainer", trainer],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, **(env or {})},
        )
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.exits: dict[int, int] = {}
        self._lock = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        ready = self.messages.get(timeout=120)
        assert "ready" in ready, ready

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            message = json.loads(line)
            if "exited" in message:
                with self._lock:
                    self.exits[message["exited"]] = message["code"]
                    self._lock.notify_all()
            else:
                self.messages.put(message)

    def spawn(self, argv: list[str], cwd: Path, log: Path,
              env: dict[str, str] | None = None, unset: tuple[str, ...] = (),
              err_log: Path | None = None) -> int:
        """Start ``nas <argv>`` in ``cwd``; return its pid.

        Its stdout is appended to ``log``, its stderr to ``err_log`` (default: ``log``).
        """
        request = {"argv": argv, "cwd": str(cwd), "log": str(log), "env": env or {},
                   "unset": list(unset), "err_log": str(err_log) if err_log else None}
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(request) + "\n").encode())
        self.process.stdin.flush()
        return int(self.messages.get(timeout=30)["pid"])

    def wait(self, pid: int, timeout: float) -> int | None:
        """The exit code of ``pid`` (negative: a signal), or None if still running."""
        with self._lock:
            self._lock.wait_for(lambda: pid in self.exits, timeout=timeout)
            return self.exits.get(pid)

    def kill(self, pid: int) -> int:
        """``kill -9 pid`` (unless it already exited) and return its exit code."""
        with self._lock:
            if pid not in self.exits:
                os.kill(pid, signal.SIGKILL)
        code = self.wait(pid, 30)
        assert code is not None, f"pid {pid} survived SIGKILL"
        return code

    def run(self, argv: list[str], cwd: Path, log: Path, timeout: float = 300,
            env: dict[str, str] | None = None, unset: tuple[str, ...] = (),
            err_log: Path | None = None) -> int:
        """Run ``nas <argv>`` to its end; return the exit code."""
        pid = self.spawn(argv, cwd, log, env, unset, err_log)
        code = self.wait(pid, timeout)
        if code is None:
            self.kill(pid)
            raise TimeoutError(f"nas {' '.join(argv)} ran over {timeout} s; see {log}")
        return code

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def children_of(pid: int) -> list[int]:
    """The pids of the direct children of ``pid`` (Linux /proc)."""
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text()
            found.extend(int(part) for part in text.split())
    except OSError:
        return []
    return found


def stop_stragglers(pid_dir: Path) -> None:
    """SIGKILL every fake trainer that recorded its pid in ``pid_dir`` and still runs.

    Only processes this test started (their pid files), each by its own id.
    """
    for entry in pid_dir.iterdir() if pid_dir.is_dir() else []:
        pid = int(entry.name)
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"fake_trainer.py" in cmdline:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
