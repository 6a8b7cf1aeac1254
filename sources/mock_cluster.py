"""ctypes binding to librdkafka's built-in mock Kafka cluster.

The confluent-kafka wheel ships librdkafka, which contains a real Kafka
protocol server for tests (`src/rdkafka_mock.h`). This module exposes the few
calls eventlake needs. The cluster lives in this process; its TCP listeners
run on librdkafka threads, so they keep serving while Python is blocked.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import confluent_kafka

from common.errors import BrokerError

_ERRSTR_SIZE = 512
_RD_KAFKA_PRODUCER = 0
_ERR_TOPIC_ALREADY_EXISTS = 36
_ALL_BROKERS = -1  # librdkafka's broker id for "every broker of the cluster"


def _load_librdkafka() -> ctypes.CDLL:
    libs_dir = Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs"
    candidates = sorted(libs_dir.glob("librdkafka*.so*"))
    if not candidates:
        raise BrokerError(
            f"librdkafka not found in {libs_dir}; reinstall the confluent-kafka wheel "
            "(`make install`), the embedded broker needs the library it bundles"
        )
    lib = ctypes.CDLL(str(candidates[0]))
    voidp, charp, c_int = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
    _declare(lib.rd_kafka_conf_new, voidp, [])
    _declare(lib.rd_kafka_conf_set, c_int, [voidp, charp, charp, charp, ctypes.c_size_t])
    _declare(lib.rd_kafka_new, voidp, [c_int, voidp, charp, ctypes.c_size_t])
    _declare(lib.rd_kafka_destroy, None, [voidp])
    _declare(lib.rd_kafka_mock_cluster_new, voidp, [voidp, c_int])
    _declare(lib.rd_kafka_mock_cluster_destroy, None, [voidp])
    _declare(lib.rd_kafka_mock_cluster_bootstraps, charp, [voidp])
    _declare(lib.rd_kafka_mock_topic_create, c_int, [voidp, charp, c_int, c_int])
    _declare(lib.rd_kafka_mock_broker_set_down, c_int, [voidp, ctypes.c_int32])
    _declare(lib.rd_kafka_mock_broker_set_up, c_int, [voidp, ctypes.c_int32])
    _declare(lib.rd_kafka_err2str, charp, [c_int])
    return lib


def _declare(func: Any, restype: object, argtypes: list[object]) -> None:
    func.restype = restype
    func.argtypes = argtypes


class MockCluster:
    """A running mock Kafka cluster with ``brokers_count`` brokers on 127.0.0.1.

    Callers can rely on: :attr:`bootstrap_servers` accepting real Kafka clients
    over TCP until :meth:`close`; :meth:`create_topic` creating a topic with
    exactly the requested partition count; broker ids ``1..brokers_count``.
    """

    def __init__(self, brokers_count: int = 1) -> None:
        self.brokers_count = brokers_count
        self._lib = _load_librdkafka()
        conf = self._lib.rd_kafka_conf_new()
        errstr = ctypes.create_string_buffer(_ERRSTR_SIZE)
        # The handle only hosts the cluster; it never connects, so silence its
        # "no bootstrap.servers" warning.
        self._lib.rd_kafka_conf_set(conf, b"log_level", b"0", errstr, _ERRSTR_SIZE)
        self._handle = self._lib.rd_kafka_new(_RD_KAFKA_PRODUCER, conf, errstr, _ERRSTR_SIZE)
        if not self._handle:
            raise BrokerError(f"librdkafka could not create a handle: {errstr.value.decode()}")
        self._cluster = self._lib.rd_kafka_mock_cluster_new(self._handle, brokers_count)
        if not self._cluster:
            self._lib.rd_kafka_destroy(self._handle)
            raise BrokerError("librdkafka could not start the mock cluster")
        self.bootstrap_servers: str = self._lib.rd_kafka_mock_cluster_bootstraps(
            self._cluster
        ).decode()

    def create_topic(self, name: str, partitions: int) -> None:
        """Create topic ``name`` with ``partitions`` partitions (replication 1).

        Raises :class:`BrokerError` if the topic exists or the name is invalid.
        """
        err = self._lib.rd_kafka_mock_topic_create(self._cluster, name.encode(), partitions, 1)
        if err == _ERR_TOPIC_ALREADY_EXISTS:
            raise BrokerError(f"topic {name!r} already exists; pick another name")
        if err:
            reason = self._lib.rd_kafka_err2str(err).decode()
            raise BrokerError(f"cannot create topic {name!r}: {reason}")

    def set_broker_up(self, broker_id: int | None, up: bool) -> None:
        """Bring broker ``broker_id`` (None: every broker) up, or take it down.

        A broker that goes down closes its client connections and refuses new
        ones; it keeps its data and its port, and serves again once up. Setting
        the state a broker already has does nothing. Raises :class:`BrokerError`
        naming the valid ids if there is no such broker.
        """
        set_state = (
            self._lib.rd_kafka_mock_broker_set_up if up else self._lib.rd_kafka_mock_broker_set_down
        )
        err = set_state(self._cluster, _ALL_BROKERS if broker_id is None else broker_id)
        if err:
            reason = self._lib.rd_kafka_err2str(err).decode()
            valid = ", ".join(str(index) for index in range(1, self.brokers_count + 1))
            raise BrokerError(
                f"cannot set broker {broker_id} {'up' if up else 'down'}: {reason}; "
                f"the embedded cluster has broker ids {valid}: pass one, or none for all"
            )

    def close(self) -> None:
        """Stop the brokers and free the cluster; safe to call twice."""
        if self._cluster:
            self._lib.rd_kafka_mock_cluster_destroy(self._cluster)
            self._lib.rd_kafka_destroy(self._handle)
            self._cluster = self._handle = None
