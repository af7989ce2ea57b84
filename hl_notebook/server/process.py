"""Run the local server (or any command that prints its URL) as a child process, and stop it.

Why: tests, benchmarks and scripts all need the same start / wait-for-URL / stop dance; one helper
keeps its edge cases (a child that dies before its URL line, one that ignores SIGTERM) in one place.
It only launches a subprocess: nothing here imports the web framework.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

URL_LINE = re.compile(r"hl_notebook server at (http://\S+)")


class ServerProcess:
    """A child process whose stdout names its URL; ``base_url`` is taken from the first match.

    The child binds its own socket (``--port 0``) before printing the URL, so there is no window
    between choosing a port and listening on it. ``output`` collects every line the child prints
    (stdout and stderr), for error messages and for tests that inspect the server log.
    """

    def __init__(self, command: Sequence[str], *, url_pattern: str | re.Pattern[str] = URL_LINE,
                 env: dict[str, str] | None = None, cwd: str | Path | None = None) -> None:
        self.command = list(command)
        self.url_pattern = re.compile(url_pattern) if isinstance(url_pattern, str) else url_pattern
        self.env = dict(env or {})
        self.cwd = cwd
        self.base_url = ""
        self.output: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    @classmethod
    def local(cls, db_path: str | Path, api_key: str, extra_args: Sequence[str] = (), *,
              env: dict[str, str] | None = None, cwd: str | Path | None = None) -> "ServerProcess":
        """``python -m hl_notebook.server`` on a free 127.0.0.1 port with its own SQLite file (not started)."""
        return cls(local_server_command(db_path, api_key, extra_args), env=env, cwd=cwd)

    def start(self, timeout: float = 60) -> "ServerProcess":
        """Start the child and wait for its URL line.

        Raises:
            RuntimeError: the child exited or printed no URL within ``timeout`` seconds; the
                message holds everything it printed.
        """
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        encoding="utf-8", errors="replace", env={**os.environ, **self.env},
                                        cwd=self.cwd)
        found = threading.Event()
        self._reader = threading.Thread(target=self._pump, args=(found,), daemon=True)
        self._reader.start()
        if not found.wait(timeout) or not self.base_url:
            self.stop()
            raise RuntimeError(f"{self.command[:3]} did not print its URL:\n" + "".join(self.output))
        return self

    def _pump(self, found: threading.Event) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            match = self.url_pattern.search(line)
            if match and not found.is_set():
                self.base_url = match.group(1)
                found.set()
        found.set()  # the child exited: wake start() up at once

    def stop(self, timeout: float = 10) -> None:
        """Terminate the child; kill it if it is still there after ``timeout`` seconds."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._reader is not None:
            self._reader.join(timeout)  # the rest of the output, up to the child's last line

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the process has not been started")
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> "ServerProcess":
        return self.start() if self.process is None else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def local_server_command(db_path: str | Path, api_key: str, extra_args: Sequence[str] = ()) -> list[str]:
    """The command line of the local server on a port the OS picks, bound to 127.0.0.1 only."""
    return [sys.executable, "-m", "hl_notebook.server", "--host", "127.0.0.1", "--port", "0",
            "--db", str(db_path), "--api-key", api_key, *extra_args]


__all__ = ["URL_LINE", "ServerProcess", "local_server_command"]
