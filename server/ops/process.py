"""A `planfit serve` child process: started, waited on until ready, stopped. The one way `planfit demo`,
the benchmarks and the tests run a server of their own."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping

import httpx


def free_port() -> int:
    """A port nothing listens on now (the OS's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(env: Mapping[str, str], log: Path, *serve_args: str, cwd: Path | None = None,
          own_session: bool = False) -> subprocess.Popen:
    """`planfit serve SERVE_ARGS` with exactly `env` as its environment, its output appended to `log`.
    `own_session`: signals sent to the caller's terminal (Ctrl-C) do not reach it."""
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "server.cli", "serve", *serve_args], cwd=cwd, env=dict(env),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=own_session)


def wait_ready(process: subprocess.Popen, root: str, log: Path, timeout: float) -> None:
    """Until `GET {root}/readyz` answers 200 (migrated, started, its database reachable). RuntimeError with
    the end of the log when the process exits first or `timeout` seconds pass (the process is then killed)."""
    deadline = time.monotonic() + timeout
    # One client for every poll: a new one builds an SSL context each time, ~20 ms of CPU per poll.
    with httpx.Client(timeout=2) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with status {process.returncode}:\n{_tail(log)}")
            try:
                if http.get(f"{root}/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    process.kill()
    process.wait()
    raise RuntimeError(f"the server was not ready within {timeout:.0f} s:\n{_tail(log)}")


def stop(process: subprocess.Popen, timeout: float = 30, signum: int = signal.SIGTERM) -> None:
    """Asks the server to stop (uvicorn finishes its requests and runs the shutdown tasks); kills it when it
    has not stopped within `timeout` seconds."""
    if process.poll() is None:
        process.send_signal(signum)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tail(log: Path, characters: int = 10_000) -> str:
    return log.read_text(errors="replace")[-characters:] if log.exists() else ""
