"""``--processes N``: one command starts N local processes of one cluster and watches them.

Each child is this command again with ``-i K -a ADDRESSES`` (free local ports) in
place of ``--processes``, its ``-X`` settings in its environment rather than on its
command line, so it checks, resumes and writes exactly as a process
started by hand would. The supervisor merges the children's figures into one
status line (and one ``/metrics``) and forwards their other output prefixed with
their index. When one child fails, the others are stopped (SIGTERM, then SIGKILL after
:data:`STOP_GRACE_S`) and the command fails naming it; SIGINT/SIGTERM stop every
child with a final snapshot.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from common.errors import ClusterError, ConfigError
from common.exits import exit_description
from common.metrics import RunFigures
from common.progress import note
from flows.runtime.status_line import STATUS_FORMAT_ENV
from sources.kafka_config import ENV_X, as_setting_lines

STOP_GRACE_S = 20.0
"""How long stopped children may take to snapshot and exit before they are killed."""
_POLL_S = 0.1
_CONFIG_ERROR_EXIT = 2
_INTERRUPTED_EXIT = 130
_PR_SET_PDEATHSIG = 1


def free_ports(count: int) -> tuple[int, ...]:
    """``count`` distinct local ports that were free when chosen."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return tuple(int(sock.getsockname()[1]) for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()


def free_addresses(count: int) -> tuple[str, ...]:
    """``count`` local HOST:PORT addresses whose ports were free when chosen."""
    return tuple(f"127.0.0.1:{port}" for port in free_ports(count))


SUPERVISOR_FLAGS = ("--processes", "--metrics-port")
"""What the supervisor does itself: its children get neither flag."""
METRICS_PORT_ENV = "EVENTLAKE_METRICS_PORT"
CLIENT_SETTING_FLAG = "-X"


def child_command(arguments: Sequence[str]) -> tuple[list[str], list[str]]:
    """The command-line arguments of a child, and its ``-X`` client settings: ``arguments``
    without :data:`SUPERVISOR_FLAGS` and without ``-X``, whose values (secrets, maybe)
    :func:`child_environment` passes instead, since every user can read a command line
    (``ps``) but only its owner a process's environment. (``--kafka-config`` stays: the
    child reads the file itself.)"""
    kept: list[str] = []
    settings: list[str] = []
    value_to: list[str] | None = None  # where the next argument, a flag's value, goes
    for argument in arguments:
        if value_to is not None:
            value_to.append(argument)
            value_to = None
        elif argument in SUPERVISOR_FLAGS:
            value_to = []
        elif argument == CLIENT_SETTING_FLAG:
            value_to = settings
        elif argument.startswith(CLIENT_SETTING_FLAG):
            settings.append(argument.removeprefix(CLIENT_SETTING_FLAG))
        elif not argument.startswith(tuple(f"{flag}=" for flag in SUPERVISOR_FLAGS)):
            kept.append(argument)
    return kept, settings


def child_environment(
    parent: Mapping[str, str], index: int, addresses: str, settings: Sequence[str]
) -> dict[str, str]:
    """The environment of child ``index``: the parent's, without
    :data:`METRICS_PORT_ENV`, as process ``index`` of the cluster at ``addresses``,
    reporting its status as JSON, with the ``-X`` ``settings`` of the parent's command
    line, if any, in :data:`ENV_X` (else the parent's :data:`ENV_X` stays)."""
    given = {ENV_X: as_setting_lines(settings)} if settings else {}
    return {
        **{name: value for name, value in parent.items() if name != METRICS_PORT_ENV},
        "EVENTLAKE_PROCESSES": "1",
        "EVENTLAKE_PROCESS_ID": str(index),
        "EVENTLAKE_ADDRESSES": addresses,
        STATUS_FORMAT_ENV: "json",
        **given,
    }


@dataclass
class _Child:
    """One supervised process and what it reported."""

    index: int
    process: subprocess.Popen[str]
    figures: RunFigures = field(default_factory=RunFigures)
    last_error: str = ""
    ended_at: float = float("inf")
    """When its output ended (it exited): the first of several failures is the cause."""
    reader: threading.Thread = field(init=False)

    def describe_exit(self) -> str:
        """How the child ended, in words."""
        code = self.process.returncode
        if code is not None and code < 0:
            return exit_description(code)
        reason = f": {self.last_error}" if self.last_error else ""
        return f"exited with code {code}{reason}"


class Supervisor:
    """Runs ``count`` children of this command and waits for them (see the module)."""

    def __init__(self, count: int, arguments: Sequence[str]) -> None:
        self._count = count
        self._arguments, self._settings = child_command(arguments)
        self._lock = threading.Lock()
        self._children: list[_Child] = []

    def run(self, stop: threading.Event) -> None:
        """Start the children and wait until all have ended; ClusterError (or ConfigError
        for a child's configuration error) naming the first that failed. ``stop`` (set by
        SIGINT/SIGTERM) stops them all."""
        addresses = ";".join(free_addresses(self._count))
        try:
            for index in range(self._count):
                self._children.append(self._start(index, addresses))
            self._wait(stop)
        finally:  # the supervisor itself failed: leave no child waiting for its peers
            self._signal_all(signal.SIGKILL)
        for child in self._children:
            child.reader.join()
        failed = [child for child in self._children if _failed(child, stop.is_set())]
        if failed:
            self._raise_for(min(failed, key=lambda child: child.ended_at))

    def _start(self, index: int, addresses: str) -> _Child:
        process = subprocess.Popen(
            [sys.executable, "-P", "-m", "flows.cli", *self._arguments],
            env=child_environment(os.environ, index, addresses, self._settings),
            stderr=subprocess.PIPE,
            encoding="utf-8",
            errors="backslashreplace",
            start_new_session=True,  # Ctrl-C reaches the supervisor, which stops them all
            preexec_fn=stop_with_parent(os.getpid()),
        )
        child = _Child(index, process)
        child.reader = threading.Thread(target=self._read, args=(child,), daemon=True)
        child.reader.start()
        return child

    def interrupted(self) -> bool:
        """Whether a child ended its bounded run interrupted: a signal to any process of
        the run stops them all."""
        return any(child.process.returncode == _INTERRUPTED_EXIT for child in self._children)

    def figures(self) -> RunFigures:
        """The children's latest figures, merged."""
        with self._lock:
            merged = RunFigures()
            for child in self._children:
                merged = merged.merged(child.figures)
            return merged

    def _read(self, child: _Child) -> None:
        """Keep the child's status reports; forward its other lines, prefixed."""
        assert child.process.stderr is not None
        for line in child.process.stderr:
            report = status_report(line)
            if report is None:
                with contextlib.suppress(OSError):  # keep draining if our stderr is gone
                    note(f"process {child.index}: {line.rstrip()}")
                if line.startswith("error: "):
                    child.last_error = line.removeprefix("error: ").strip()
                continue
            with self._lock:
                child.figures = report
        child.ended_at = time.monotonic()

    def _wait(self, stop: threading.Event) -> None:
        """Poll the children until all have ended; stop them all once one failed."""
        kill_at: float | None = None
        while any(child.process.poll() is None for child in self._children):
            failing = any(_failed(child, stop.is_set()) for child in self._children)
            if kill_at is None and (stop.is_set() or failing):
                self._signal_all(signal.SIGTERM)
                kill_at = time.monotonic() + STOP_GRACE_S
            elif kill_at is not None and time.monotonic() > kill_at:
                self._signal_all(signal.SIGKILL)
                kill_at = float("inf")
            time.sleep(_POLL_S)

    def _signal_all(self, signum: signal.Signals) -> None:
        """Send ``signum`` to every child still running."""
        for child in self._children:
            if child.process.poll() is None:
                child.process.send_signal(signum)

    def _raise_for(self, failed: _Child) -> None:
        message = (
            f"process {failed.index} of {self._count} (pid {failed.process.pid}) "
            f"{failed.describe_exit()}; the others were stopped"
        )
        if failed.process.returncode == _CONFIG_ERROR_EXIT:
            raise ConfigError(failed.last_error or message)
        raise ClusterError(message)


def stop_with_parent(parent: int) -> Callable[[], None]:
    """What a child runs before it starts: SIGTERM to itself when ``parent`` dies (Linux's
    parent-death signal), so that no child of a killed supervisor runs on holding the
    recovery directory; it stops cleanly, as on Ctrl-C. Elsewhere, nothing."""
    prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)

    def arm() -> None:
        if prctl is None:
            return
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


def _failed(child: _Child, stopping: bool) -> bool:
    """Whether ``child`` has ended in failure: an interrupted bounded run is a stop, and
    so is dying of the SIGTERM that stops a run (one still starting has no handler)."""
    stops = (None, 0, _INTERRUPTED_EXIT, -signal.SIGTERM if stopping else None)
    return child.process.returncode not in stops


def status_report(line: str) -> RunFigures | None:
    """The figures of a child's status report line; None for any other line."""
    if not line.startswith('{"status"'):
        return None
    try:
        return RunFigures.from_json(json.loads(line)["status"])
    except (ValueError, KeyError, TypeError):
        return None
