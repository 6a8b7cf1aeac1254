"""Which Kafka cluster a command talks to."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KafkaTarget:
    """A Kafka cluster to talk to.

    ``control_socket`` is set only for the embedded broker: the one cluster
    where eventlake may create topics itself, and where a partition that loses
    its oldest messages is known to have hit the mock cluster's size limit.
    """

    bootstrap_servers: str
    control_socket: str | None = None

    @property
    def embedded(self) -> bool:
        """True for eventlake's embedded broker."""
        return self.control_socket is not None

    def client_config(self) -> dict[str, str | int | float | bool]:
        """librdkafka settings every eventlake client starts from."""
        return {"bootstrap.servers": self.bootstrap_servers}
