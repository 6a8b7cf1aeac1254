"""The embedded Kafka broker: a process hosting librdkafka's mock cluster.

``serve`` runs the broker in this process (the ``eventlake broker`` command).
It prints the bootstrap servers as the first line of stdout, records them with
a control-socket path in a JSON state file, creates topics on request over
that Unix socket (the mock cluster has no CreateTopics API), and on SIGINT or
SIGTERM removes the state file and returns.

``EmbeddedBroker`` starts such a process from Python (for tests and the demo)
and ``create_topic`` asks a running broker for a new topic.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from sources.errors import BrokerError, ConfigError, EventlakeError
from sources.mock_cluster import MockCluster
from sources.target import KafkaTarget
from sources.topics import TopicSpec

DEFAULT_STATE_FILE = Path(".eventlake/broker.json")
# Monitoring events are keyed by service (5 keys): with 16 partitions and the
# murmur2 partitioner each service gets its own partition, which spreads the
# mock cluster's 5 MiB-per-partition limit over all of them.
DEFAULT_TOPICS = (TopicSpec("requests", 16), TopicSpec("shop", 8))
_START_TIMEOUT_S = 30.0
_PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


@dataclass(frozen=True)
class BrokerState:
    """What a running broker publishes in its state file."""

    bootstrap_servers: str
    control_socket: str
    pid: int


def read_state(state_file: Path) -> BrokerState | None:
    """Return the state of the broker recorded in ``state_file``, or None.

    None means no file, or a file left by a broker process that has died.
    """
    try:
        state = BrokerState(**json.loads(state_file.read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None
    return state if _process_alive(state.pid) else None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _ControlHandler(socketserver.StreamRequestHandler):
    """One JSON request per line: {"create_topic": NAME, "partitions": N}."""

    server: _ControlServer

    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(json.dumps(self._answer(line)).encode() + b"\n")

    def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            spec = TopicSpec(str(request["create_topic"]), int(request["partitions"]))
            self.server.cluster.create_topic(spec.name, spec.partitions)
        except EventlakeError as err:
            return {"ok": False, "error": str(err)}
        except (ValueError, KeyError, TypeError) as err:
            return {"ok": False, "error": f"malformed control request: {err}"}
        return {"ok": True}


class _ControlServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, cluster: MockCluster) -> None:
        self.cluster = cluster
        self.path = path
        super().__init__(path, _ControlHandler)


def serve(
    topics: Sequence[TopicSpec],
    brokers_count: int,
    state_file: Path,
    out: IO[str] = sys.stdout,
) -> None:
    """Run the embedded broker until SIGINT or SIGTERM, then clean up and return.

    The first line written to ``out`` is the bootstrap servers string.
    Raises :class:`ConfigError` if another live broker owns ``state_file``.
    """
    running = read_state(state_file)
    if running is not None:
        raise ConfigError(
            f"a broker is already running at {running.bootstrap_servers} (pid {running.pid}, "
            f"state file {state_file}); stop it or pass another --state-file"
        )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    cluster = MockCluster(brokers_count)
    socket_dir = tempfile.mkdtemp(prefix="eventlake-broker-")
    server = _ControlServer(str(Path(socket_dir) / "control.sock"), cluster)
    try:
        for spec in topics:
            cluster.create_topic(spec.name, spec.partitions)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        state = BrokerState(cluster.bootstrap_servers, server.path, os.getpid())
        _write_state(state_file, state)
        print(cluster.bootstrap_servers, file=out, flush=True)
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        with contextlib.suppress(FileNotFoundError):
            Path(server.path).unlink()
        Path(socket_dir).rmdir()
        _remove_state(state_file)
        cluster.close()


def _write_state(state_file: Path, state: BrokerState) -> None:
    state_file.parent.mkdir(parents=True, exist_ok=True)
    temp = state_file.with_name(f".{state_file.name}.tmp")
    temp.write_text(json.dumps(asdict(state)))
    temp.replace(state_file)


def _remove_state(state_file: Path) -> None:
    """Remove the state file only if it is still ours."""
    try:
        owner = json.loads(state_file.read_text()).get("pid")
    except (FileNotFoundError, ValueError):
        return
    if owner == os.getpid():
        state_file.unlink()


def create_topic(control_socket: str, spec: TopicSpec, timeout_s: float = 10.0) -> None:
    """Ask the broker listening on ``control_socket`` to create ``spec``.

    Raises :class:`BrokerError` with the broker's reason if it refuses.
    """
    request = json.dumps({"create_topic": spec.name, "partitions": spec.partitions})
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout_s)
            conn.connect(control_socket)
            conn.sendall(request.encode() + b"\n")
            answer = json.loads(conn.makefile("rb").readline())
    except (OSError, ValueError) as err:
        raise BrokerError(
            f"cannot reach the embedded broker's control socket {control_socket}: {err}; "
            "is `eventlake broker` still running?"
        ) from err
    if not answer.get("ok"):
        raise BrokerError(answer.get("error", "the broker refused the request"))


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the parent dies, so no broker is orphaned."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedBroker:
    """An ``eventlake broker`` process, started on enter and stopped on exit.

    ``with EmbeddedBroker(topics=[TopicSpec("t", 4)]) as bootstrap:`` yields the
    bootstrap servers string once the broker accepts clients. Leaving the block
    sends SIGTERM and waits for the process to remove its state file.
    """

    def __init__(
        self,
        topics: Sequence[TopicSpec] = (),
        brokers_count: int = 1,
        state_file: Path | None = None,
    ) -> None:
        self._topics = topics
        self._brokers_count = brokers_count
        self._state_dir = tempfile.TemporaryDirectory(prefix="eventlake-embedded-")
        self.state_file = state_file or Path(self._state_dir.name) / "broker.json"
        self._process: subprocess.Popen[str] | None = None
        self.bootstrap_servers = ""

    def __enter__(self) -> str:
        command = [
            sys.executable, "-m", "flows.cli", "broker",
            "--brokers-count", str(self._brokers_count),
            "--topics", ",".join(str(spec) for spec in self._topics),
            "--state-file", str(self.state_file),
        ]  # fmt: skip
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, text=True, preexec_fn=_die_with_parent
        )
        assert self._process.stdout is not None
        first_line = self._process.stdout.readline().strip()
        if not first_line:
            self._process.wait(timeout=_START_TIMEOUT_S)
            raise BrokerError(f"the embedded broker exited with code {self._process.returncode}")
        self.bootstrap_servers = first_line
        return first_line

    @property
    def target(self) -> KafkaTarget:
        """This broker as a target, with its control socket (so topics can be created)."""
        state = read_state(self.state_file)
        if state is None:
            raise BrokerError("the embedded broker is not running")
        return KafkaTarget(state.bootstrap_servers, state.control_socket)

    def create_topic(self, spec: TopicSpec) -> None:
        """Create a topic on this broker (see :func:`create_topic`)."""
        control_socket = self.target.control_socket
        assert control_socket is not None
        create_topic(control_socket, spec)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=_START_TIMEOUT_S)
            if self._process.stdout is not None:
                self._process.stdout.close()
        self._state_dir.cleanup()
