"""The embedded Kafka broker: a process hosting librdkafka's mock cluster.

``serve`` runs the broker in this process (the ``eventlake broker`` command).
It prints the bootstrap servers as the first line of stdout, records them with
a control-socket path in a JSON state file, creates topics on request over
that Unix socket (the mock cluster has no CreateTopics API), and on SIGINT or
SIGTERM removes the state file and returns. The same socket takes brokers down
and brings them up again, to simulate outages.

``EmbeddedBroker`` starts such a process from Python (for tests and the demo),
``create_topic`` asks a running broker for a new topic and ``set_broker_up``
takes one of its brokers down or brings it up.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from common.errors import BrokerError, ConfigError, EventlakeError
from sources.mock_cluster import MockCluster
from sources.target import KafkaTarget
from sources.topics import TopicSpec

DEFAULT_STATE_FILE = Path(".eventlake/broker.json")
# Monitoring events are keyed by service (5 keys): with 16 partitions and the
# murmur2 partitioner each service gets its own partition, which spreads the
# mock cluster's 5 MiB-per-partition limit over all of them.
DEFAULT_TOPICS = (TopicSpec("requests", 16), TopicSpec("shop", 8))
_START_TIMEOUT_S = 30.0
_CONNECT_TIMEOUT_S = 5.0
_SIGNAL_CHECK_S = 0.2
_PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


@dataclass(frozen=True)
class BrokerState:
    """What a running broker publishes in its state file."""

    bootstrap_servers: str
    control_socket: str
    pid: int


def read_state(state_file: Path) -> BrokerState | None:
    """Return the state of the broker recorded in ``state_file``, or None.

    None means no file, or a file left by a broker that has ended: a state file counts
    only while its broker's control socket accepts connections (its pid alone proves
    nothing, since another process may have that pid by now).
    """
    try:
        state = BrokerState(**json.loads(state_file.read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None
    return state if _listening(state.control_socket) else None


def _listening(control_socket: str) -> bool:
    """Whether a broker accepts connections on ``control_socket``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(_CONNECT_TIMEOUT_S)
        try:
            conn.connect(control_socket)
        except (OSError, TypeError, ValueError):  # a path of the wrong type, or a NUL
            return False
    return True


def _create_topic(cluster: MockCluster, request: dict[str, Any]) -> None:
    spec = TopicSpec(str(request["create_topic"]), int(request["partitions"]))
    cluster.create_topic(spec.name, spec.partitions)


def _set_broker_up(cluster: MockCluster, request: dict[str, Any]) -> None:
    broker_id, up = request["broker"], request["up"]
    if not isinstance(up, bool):
        raise TypeError(f'"up" must be true or false, not {up!r}')
    cluster.set_broker_up(None if broker_id is None else int(broker_id), up)


# A request is handled by the entry of the first of these keys it holds.
_REQUEST_HANDLERS: dict[str, Callable[[MockCluster, dict[str, Any]], None]] = {
    "create_topic": _create_topic,
    "broker": _set_broker_up,
}


def _handle_request(cluster: MockCluster, request: dict[str, Any]) -> None:
    kind = next((key for key in _REQUEST_HANDLERS if key in request), None)
    if kind is None:
        raise ValueError(f"expected one of the keys {', '.join(_REQUEST_HANDLERS)}")
    _REQUEST_HANDLERS[kind](cluster, request)


class _ControlHandler(socketserver.StreamRequestHandler):
    """One JSON request per line, answered by one JSON line {"ok": ..., "error": ...}:
    {"create_topic": NAME, "partitions": N}, or {"broker": ID or null, "up": BOOL}."""

    server: _ControlServer

    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(json.dumps(self._answer(line)).encode() + b"\n")

    def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            _handle_request(self.server.cluster, json.loads(line))
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


@contextlib.contextmanager
def _control_server(cluster: MockCluster) -> Iterator[_ControlServer]:
    """A control server answering on a fresh Unix socket; removed on exit."""
    socket_dir = tempfile.mkdtemp(prefix="eventlake-broker-")
    server = _ControlServer(str(Path(socket_dir) / "control.sock"), cluster)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        Path(server.path).unlink(missing_ok=True)
        Path(socket_dir).rmdir()


def serve(
    topics: Sequence[TopicSpec],
    brokers_count: int,
    state_file: Path,
    out: IO[str] = sys.stdout,
) -> None:
    """Run the embedded broker until SIGINT or SIGTERM, then clean up and return.

    The first line written to ``out`` is the bootstrap servers string; it is
    written only once every topic exists. Raises :class:`ConfigError` if another
    live broker owns ``state_file``, :class:`BrokerError` if a topic cannot be
    created (nothing is left behind either way).
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
    try:
        for spec in topics:
            cluster.create_topic(spec.name, spec.partitions)
        with _control_server(cluster) as server:
            _write_state(
                state_file, BrokerState(cluster.bootstrap_servers, server.path, os.getpid())
            )
            try:
                print(cluster.bootstrap_servers, file=out, flush=True)
                # A signal that lands on another thread (one answering a control request)
                # runs its handler only once this thread wakes: an endless wait misses it.
                while not stop.wait(_SIGNAL_CHECK_S):
                    pass
            finally:
                _remove_state(state_file)
    finally:
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
    request = {"create_topic": spec.name, "partitions": spec.partitions}
    _send_request(control_socket, request, timeout_s)


def set_broker_up(
    control_socket: str, broker_id: int | None, up: bool, timeout_s: float = 10.0
) -> None:
    """Ask the broker listening on ``control_socket`` to bring broker ``broker_id``
    (None: every broker) up or take it down; see :meth:`MockCluster.set_broker_up`.

    Returns once it is done. Raises :class:`BrokerError` with the broker's reason
    (which names the valid ids) if it refuses.
    """
    _send_request(control_socket, {"broker": broker_id, "up": up}, timeout_s)


def _send_request(control_socket: str, request: dict[str, Any], timeout_s: float) -> None:
    """Send one control request and wait for its answer; raise BrokerError if refused."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout_s)
            conn.connect(control_socket)
            conn.sendall(json.dumps(request).encode() + b"\n")
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
    """A broker process (see :func:`serve`), started on enter and stopped on exit.

    ``with EmbeddedBroker(topics=[TopicSpec("t", 4)]) as bootstrap:`` yields the
    bootstrap servers string once the broker accepts clients. Leaving the block
    sends SIGTERM, and SIGKILL if the process has not ended in time. The
    process also ends if its parent dies.
    """

    def __init__(
        self,
        topics: Sequence[TopicSpec] = (),
        brokers_count: int = 1,
        state_file: Path | None = None,
    ) -> None:
        self._state_dir = tempfile.TemporaryDirectory(prefix="eventlake-embedded-")
        self.state_file = state_file or Path(self._state_dir.name) / "broker.json"
        self._options = {
            "topics": [asdict(spec) for spec in topics],
            "brokers_count": brokers_count,
            "state_file": str(self.state_file),
        }
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> str:
        command = [sys.executable, "-P", "-m", "sources.broker", json.dumps(self._options)]
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, text=True, preexec_fn=_die_with_parent
        )
        assert self._process.stdout is not None
        ready, _, _ = select.select([self._process.stdout], [], [], _START_TIMEOUT_S)
        first_line = self._process.stdout.readline().strip() if ready else ""
        if not first_line:
            self._stop()
            raise BrokerError(
                f"the embedded broker did not start (exit code {self._process.returncode}); "
                "see its error above"
            )
        return first_line

    @property
    def target(self) -> KafkaTarget:
        """This broker as a target, with its control socket (so topics can be created)."""
        state = self._running_state()
        return KafkaTarget(state.bootstrap_servers, state.control_socket)

    def create_topic(self, spec: TopicSpec) -> None:
        """Create a topic on this broker (see :func:`create_topic`)."""
        create_topic(self._running_state().control_socket, spec)

    def set_broker_up(self, broker_id: int | None, up: bool) -> None:
        """Bring broker ``broker_id`` (1 to ``brokers_count``; None: every broker)
        up or take it down (see :func:`set_broker_up`); returns once it is done."""
        set_broker_up(self._running_state().control_socket, broker_id, up)

    def _running_state(self) -> BrokerState:
        state = read_state(self.state_file)
        if state is None:
            raise BrokerError(
                "the embedded broker is not running; use it inside `with EmbeddedBroker(...)`"
            )
        return state

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=_START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._state_dir.cleanup()


def _serve_from_json(options: str) -> int:
    """Run :func:`serve` with :class:`EmbeddedBroker`'s options; the exit code."""
    parsed = json.loads(options)
    topics = [TopicSpec(**topic) for topic in parsed["topics"]]
    try:
        serve(topics, parsed["brokers_count"], Path(parsed["state_file"]))
    except EventlakeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_serve_from_json(sys.argv[1]))
