"""Loopback ports and the child server processes that listen on them.

Kafka and Redis are run as plain child processes (no Docker on our machines), so both need
the same care: a free loopback port chosen once and kept across restarts (clients reconnect
to the same address after a kill), a process group of their own (so Ctrl-C in a terminal
reaches the parent only and the parent decides how to stop them), output captured to a
log file whose tail explains a failed start, and a guarantee that nothing is left running
when the Python process ends, even when it is killed.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from bando.infra.exceptions import InfraError

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A port that was free on ``host`` a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether a server could bind ``host:port`` now (SO_REUSEADDR, as servers set it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def log_tail(path: Path, start: int = 0, lines: int = 40) -> str:
    """The last ``lines`` lines written to ``path`` after byte offset ``start``."""
    try:
        with open(path, "rb") as fh:
            fh.seek(start)
            data = fh.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


# Children still alive when the interpreter exits are killed: a test session that crashes
# must not leave a 512 MB JVM behind for the next one. Strong references: a running server
# stays reachable (and so killable) even if its owner dropped it.
_live: set[ServerProcess] = set()
_kill_at_exit_registered = False


def _kill_leftovers() -> None:
    for server in list(_live):
        server.kill()


def _track(server: ServerProcess) -> None:
    global _kill_at_exit_registered
    if not _kill_at_exit_registered:
        # Registered on the first spawn, usually after weakref.finalize registered its exit
        # hook; atexit runs hooks last-in first-out, so children die before their temporary
        # directories go (the other order is harmless too: Linux lets a running server's
        # files be deleted, and it is killed just after).
        atexit.register(_kill_leftovers)
        _kill_at_exit_registered = True
    _live.add(server)


def pdeathsig_prefix() -> list[str]:
    """``setpriv --pdeathsig KILL`` when safe, so a SIGKILLed parent takes its children along.

    The kernel sends the signal when the *thread* that forked exits, so it is only used from
    the main thread (a server started from a worker thread would die with that thread).
    """
    if threading.current_thread() is not threading.main_thread():
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


class ServerProcess:
    """A server run as a child process, with a data directory and a log file.

    Subclasses implement ``start()`` with :meth:`_spawn` and :meth:`_wait_ready`. ``stop()``
    and ``kill()`` keep the data directory, so ``start()`` afterwards restarts the same server
    with the same data on the same port; ``cleanup()`` (or leaving a ``with`` block) deletes a
    directory that this object created itself.
    """

    name = "server"

    def __init__(self, data_dir: str | os.PathLike[str] | None, host: str = LOOPBACK) -> None:
        self.host = host
        self._owns_dir = data_dir is None
        if data_dir is None:
            data_dir = tempfile.mkdtemp(prefix=f"bando-{self.name}-")
            # Runs on cleanup(), garbage collection or interpreter exit, whichever is first.
            self._remove_dir = weakref.finalize(self, shutil.rmtree, data_dir, True)
        self.data_dir = Path(data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    # -- state ---------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """The end of what the server wrote since its last start."""
        return log_tail(self.log_path, self._log_start, lines)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> None:
        raise NotImplementedError

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the server to shut down cleanly (SIGTERM); SIGKILL it after ``timeout``."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s pid %d ignored SIGTERM for %.0fs; killing it",
                            self.name, proc.pid, timeout)
                self._signal(signal.SIGKILL)
                proc.wait()
        self._forget()

    def kill(self) -> None:
        """SIGKILL the server, as a crash would (fault tests); the data directory stays."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(signal.SIGKILL)
            proc.wait()
        self._forget()

    def cleanup(self) -> None:
        """Stop if needed and delete the data directory if this object created it."""
        if self.running:
            self.kill()
        if self._owns_dir:
            self._remove_dir()

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self.cleanup()

    # -- helpers for subclasses ----------------------------------------------------------
    def _spawn(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        with open(self.log_path, "ab") as out:
            out.write(f"==== bando: starting {self.name}: {' '.join(argv)}\n".encode())
            out.flush()
            self._proc = subprocess.Popen(  # noqa: S603 - argv built by us, no shell
                [*pdeathsig_prefix(), *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                env=full_env,
                start_new_session=True,
            )
        _track(self)
        log.debug("%s started, pid %d, log %s", self.name, self._proc.pid, self.log_path)

    def _wait_ready(self, probe: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``probe`` until it is true; fail early if the process exits."""
        started = time.monotonic()
        deadline = started + timeout
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                self._forget()
                raise InfraError(f"{what} exited with status {code} while starting "
                                 f"(log: {self.log_path})", self.log_tail())
            try:
                if probe():
                    log.info("%s ready in %.1fs", what, time.monotonic() - started)
                    return
            except OSError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                tail = self.log_tail()
                self.kill()
                raise InfraError(f"{what} not ready after {timeout:.0f}s "
                                 f"(log: {self.log_path})", tail)
            time.sleep(0.2)

    def _signal(self, sig: signal.Signals) -> None:
        assert self._proc is not None
        # The child leads its own group (start_new_session): signal the whole group, so
        # helpers the server may have forked go too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, sig)

    def _forget(self) -> None:
        self._proc = None
        _live.discard(self)
