"""Where Kafka is: ``--brokers``, else the embedded broker's state file.

Every command that talks to Kafka resolves its target here, so they all fail
the same way, before doing anything, when no broker can be found or reached.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from common.errors import ConfigError
from common.log import LOGGER
from sources.broker import create_topic, read_state
from sources.kafka_config import BOOTSTRAP, check_client_settings
from sources.target import DEFAULT_BROKER_TIMEOUT_S, KafkaTarget
from sources.topics import TopicSpec

_HOST_PORT = re.compile(r"^[A-Za-z0-9._\-\[\]:]+:(\d{1,5})$")
T = TypeVar("T")
RETRY_PAUSE_S = 1.0
REACH_TIMEOUT_S = 5.0
"""The longest a single attempt to reach Kafka waits."""

NO_BROKER_HELP = (
    "no Kafka brokers: pass --brokers HOST:PORT[,HOST:PORT...] (or set EVENTLAKE_BROKERS), "
    "or start the embedded broker in another terminal with `eventlake broker`"
)


def validate_brokers(brokers: str) -> str:
    """Return ``brokers`` stripped if it is a HOST:PORT list, else raise ConfigError."""
    entries = [entry.strip() for entry in brokers.split(",")]
    for entry in entries:
        match = _HOST_PORT.match(entry)
        if not match or not 0 < int(match.group(1)) < 65536:
            raise ConfigError(
                f"invalid --brokers entry {entry!r}: write HOST:PORT with a port from 1 to "
                "65535, comma-separated for several brokers, e.g. 127.0.0.1:9092"
            )
    return ",".join(entries)


def resolve_target(
    brokers: str | None,
    state_file: Path,
    timeout_s: float = DEFAULT_BROKER_TIMEOUT_S,
    settings: Mapping[str, str] = MappingProxyType({}),
) -> KafkaTarget:
    """The cluster named by ``brokers`` (or the ``bootstrap.servers`` of ``settings``),
    else the running embedded broker, tried for ``timeout_s`` at start; its clients get
    ``settings`` too.

    Raises :class:`ConfigError` (with :data:`NO_BROKER_HELP`) if neither exists, and
    with librdkafka's reason if ``settings`` are invalid.
    """
    check_client_settings(settings)
    pairs = tuple(sorted(settings.items()))
    servers = settings.get(BOOTSTRAP)
    if brokers and servers and validate_brokers(brokers) != servers:
        raise ConfigError(f"--brokers and {BOOTSTRAP} name different servers; pass one")
    if brokers or servers:
        bootstrap = validate_brokers(brokers) if brokers else str(servers)
        return KafkaTarget(bootstrap, timeout_s=timeout_s, settings=pairs)
    state = read_state(state_file)
    if state is None:
        raise ConfigError(f"{NO_BROKER_HELP} (no running broker recorded in {state_file})")
    return KafkaTarget(state.bootstrap_servers, state.control_socket, timeout_s, pairs)


def patiently(target: KafkaTarget, call: Callable[[float], T], timeout_s: float | None = None) -> T:
    """``call(attempt_timeout_s)``, retried with a line per failure while it raises
    KafkaException, for ``timeout_s`` (default: the target's ``--broker-timeout``);
    then ConfigError naming the servers tried and the fix."""
    patience = target.timeout_s if timeout_s is None else timeout_s
    deadline = time.monotonic() + patience
    while True:
        try:
            return call(max(min(REACH_TIMEOUT_S, deadline - time.monotonic()), 0.1))
        except KafkaException as err:
            reason, left = err.args[0].str(), deadline - time.monotonic()
            if left <= 0:
                raise ConfigError(
                    f"cannot reach Kafka at {target.bootstrap_servers} within {patience:.0f}s "
                    f"({reason}); check --brokers{_security_hint(target)}, start `eventlake "
                    "broker`, or wait longer with --broker-timeout"
                ) from err
            LOGGER.warning(
                "Kafka at %s does not answer (%s); retrying for %.0fs more (--broker-timeout)",
                target.bootstrap_servers, reason, left,
            )  # fmt: skip
            time.sleep(min(RETRY_PAUSE_S, left))


def _security_hint(target: KafkaTarget) -> str:
    """Where to look when the client was told to secure its connections."""
    keys = [key for key, _ in target.settings if key.startswith(("security.", "sasl.", "ssl."))]
    return f", the security settings ({', '.join(keys)}: -X, --kafka-config)" if keys else ""


def list_topics(target: KafkaTarget, timeout_s: float | None = None) -> dict[str, int]:
    """Topic name → partition count, asked :func:`patiently`."""
    admin = AdminClient(target.client_config())
    metadata = patiently(target, lambda attempt_s: admin.list_topics(timeout=attempt_s), timeout_s)
    return {name: len(topic.partitions) for name, topic in metadata.topics.items()}


def require_topic(target: KafkaTarget, topic: str) -> int:
    """The partition count of ``topic``; ConfigError naming the fix if it does not exist."""
    partitions = list_topics(target).get(topic)
    if partitions is None:
        raise ConfigError(
            f"topic {topic!r} does not exist on {target.bootstrap_servers}; check --topic, "
            "or create it (`eventlake broker create-topic`, or `eventlake produce` on the "
            "embedded broker)"
        )
    return partitions


def ensure_topic(target: KafkaTarget, spec: TopicSpec) -> None:
    """Make sure ``spec.name`` exists.

    On the embedded broker a missing topic is created with ``spec.partitions``;
    on any other cluster a missing topic is a ConfigError saying to create it.
    """
    if spec.name in list_topics(target):
        return
    if target.control_socket is None:
        require_topic(target, spec.name)
    else:
        create_topic(target.control_socket, spec)


def low_watermarks(target: KafkaTarget, topic: str) -> list[int]:
    """The oldest retained offset of each partition of ``topic``, by partition index."""
    consumer = Consumer({**target.client_config(), "group.id": "eventlake-watermarks"})
    try:
        partitions = consumer.list_topics(topic, timeout=REACH_TIMEOUT_S).topics[topic].partitions
        return [
            consumer.get_watermark_offsets(TopicPartition(topic, index), REACH_TIMEOUT_S)[0]
            for index in sorted(partitions)
        ]
    finally:
        consumer.close()
