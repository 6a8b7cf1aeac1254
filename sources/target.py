"""Which Kafka cluster a command talks to."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

LIBRDKAFKA_LOG = logging.getLogger("eventlake.librdkafka")
"""Where librdkafka's own log lines go: nowhere (during an outage it logs a refused
connection many times a second); its errors reach callers as exceptions, error
callbacks and delivery reports instead."""
LIBRDKAFKA_LOG.addHandler(logging.NullHandler())
LIBRDKAFKA_LOG.propagate = False
DEFAULT_BROKER_TIMEOUT_S = 60.0
"""``--broker-timeout``: how long a command keeps trying to reach Kafka at start."""


@dataclass(frozen=True)
class KafkaTarget:
    """A Kafka cluster to talk to.

    ``control_socket`` is set only for the embedded broker: the one cluster
    where eventlake may create topics itself, and where a partition that loses
    its oldest messages is known to have hit the mock cluster's size limit.
    """

    bootstrap_servers: str
    control_socket: str | None = None
    timeout_s: float = DEFAULT_BROKER_TIMEOUT_S
    """How long to keep retrying when the cluster does not answer at start."""
    settings: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    """More librdkafka settings for every client (``-X``, ``--kafka-config``); kept out
    of the repr, for they may hold credentials."""

    @property
    def embedded(self) -> bool:
        """True for eventlake's embedded broker."""
        return self.control_socket is not None

    def client_config(self) -> dict[str, Any]:
        """librdkafka settings every eventlake client starts from."""
        return {
            **dict(self.settings),
            "bootstrap.servers": self.bootstrap_servers,
            "logger": LIBRDKAFKA_LOG,
        }
