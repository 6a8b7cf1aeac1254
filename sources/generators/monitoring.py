"""Synthetic request logs of a handful of services: latency, status codes, error bursts."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from sources.generators.base import (
    CHUNK,
    DEFAULT_EVENT_RATE,
    EventGenerator,
    GeneratorConfigError,
    cumulative,
    epoch_us,
    format_epoch_ms,
    pick,
)

DEFAULT_DISORDER = 0.05
"""The fraction of monitoring events sent out of order unless told otherwise."""


@dataclass(frozen=True)
class Endpoint:
    """One endpoint: its share of its service's traffic and its log-normal latency."""

    path: str
    share: float
    median_ms: float
    sigma: float
    """Standard deviation of ``ln(latency)`` (before spikes)."""


@dataclass(frozen=True)
class Service:
    """A service: its share of all requests and its endpoints."""

    name: str
    share: float
    endpoints: tuple[Endpoint, ...]


@dataclass(frozen=True)
class BurstSchedule:
    """Error bursts aligned to the Unix epoch: the first ``duration_s`` of every ``period_s``.

    During a burst the service's 5xx probability is ``error_rate`` instead of the base rate.
    """

    period_s: int
    duration_s: int
    error_rate: float

    def active(self, epoch_s: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """Whether each event time (whole seconds since the epoch) falls inside a burst."""
        inside: npt.NDArray[np.bool_] = epoch_s % self.period_s < self.duration_s
        return inside


class MonitoringGenerator(EventGenerator):
    """Request events ``{ts, service, endpoint, region, status, latency_ms, trace_id}``.

    Emission order is nominal-time order; a fraction ``disorder`` of events carry a
    ``ts`` moved back by up to ``max_delay_s`` (whole milliseconds), the rest carry
    their nominal time. All rates and shapes are the class constants below.
    """

    name: ClassVar[str] = "monitoring"
    default_topic: ClassVar[str] = "requests"
    key_field: ClassVar[str] = "service"

    SERVICES: ClassVar[tuple[Service, ...]] = (
        Service("search", 0.35, (
            Endpoint("/search", 0.7, 60.0, 0.45),
            Endpoint("/search/suggest", 0.3, 8.0, 0.40),
        )),
        Service("auth", 0.20, (
            Endpoint("/auth/login", 0.2, 90.0, 0.45),
            Endpoint("/auth/token", 0.5, 5.0, 0.35),
            Endpoint("/auth/refresh", 0.3, 12.0, 0.40),
        )),
        Service("catalog", 0.20, (
            Endpoint("/catalog/item", 0.4, 20.0, 0.40),
            Endpoint("/catalog/list", 0.3, 45.0, 0.45),
            Endpoint("/catalog/images", 0.2, 30.0, 0.50),
            Endpoint("/catalog/reviews", 0.1, 70.0, 0.45),
        )),
        Service("checkout", 0.15, (
            Endpoint("/checkout", 0.4, 120.0, 0.45),
            Endpoint("/checkout/cart", 0.4, 40.0, 0.40),
            Endpoint("/checkout/confirm", 0.2, 200.0, 0.50),
        )),
        Service("payments", 0.10, (
            Endpoint("/payments/charge", 0.5, 180.0, 0.50),
            Endpoint("/payments/refund", 0.2, 150.0, 0.45),
            Endpoint("/payments/status", 0.3, 15.0, 0.40),
        )),
    )  # fmt: skip
    REGIONS: ClassVar[tuple[tuple[str, float], ...]] = (
        ("eu-west-1", 0.4),
        ("us-east-1", 0.4),
        ("ap-south-1", 0.2),
    )
    CLIENT_ERRORS: ClassVar[tuple[int, ...]] = (400, 404, 429)
    SERVER_ERRORS: ClassVar[tuple[int, ...]] = (500, 502, 503)
    CLIENT_ERROR_RATE: ClassVar[float] = 0.03
    SERVER_ERROR_RATE: ClassVar[float] = 0.01
    BURSTS: ClassVar[Mapping[str, BurstSchedule]] = MappingProxyType(
        {"payments": BurstSchedule(period_s=600, duration_s=60, error_rate=0.30)}
    )
    SPIKE_PROBABILITY: ClassVar[float] = 0.005
    SPIKE_FACTOR: ClassVar[tuple[float, float]] = (5.0, 20.0)

    def __init__(
        self,
        seed: int = 0,
        start: datetime | None = None,
        events_per_second: float = DEFAULT_EVENT_RATE,
        disorder: float = DEFAULT_DISORDER,
        max_delay_s: float = 3.0,
    ) -> None:
        super().__init__(seed, start, events_per_second)
        if not 0.0 <= disorder <= 1.0:
            raise GeneratorConfigError(f"disorder must be within [0, 1], got {disorder!r}")
        if not 0.0 <= max_delay_s < float("inf"):
            raise GeneratorConfigError(f"max_delay_s must be >= 0 and finite, got {max_delay_s!r}")
        self.disorder = disorder
        self.max_delay_s = max_delay_s
        self._tables = _Tables(self.SERVICES, self.BURSTS)
        self._regions = [name for name, _ in self.REGIONS]
        self._region_cdf = cumulative([share for _, share in self.REGIONS])

    def events(self) -> Iterator[dict[str, Any]]:
        """Monitoring events forever, ``CHUNK`` random draws at a time."""
        rng = np.random.default_rng(self.seed)
        start_us = epoch_us(self.start)
        first = 0
        while True:
            yield from self._chunk(rng, start_us, first)
            first += CHUNK

    def _chunk(
        self, rng: np.random.Generator, start_us: int, first: int
    ) -> Iterator[dict[str, Any]]:
        offsets_us = np.rint(np.arange(first, first + CHUNK) * 1e6 / self.events_per_second)
        nominal_ms = (start_us + offsets_us.astype(np.int64)) // 1000
        endpoint = pick(self._tables.endpoint_cdf, rng.random(CHUNK))
        region = pick(self._region_cdf, rng.random(CHUNK)).tolist()
        latency = np.round(self._latency(rng, endpoint), 3).tolist()
        status = self._status(rng, endpoint, nominal_ms).tolist()
        ts = self._displace(rng, nominal_ms).tolist()
        traces = rng.bytes(8 * CHUNK).hex()
        services, paths = self._tables.service_names, self._tables.paths
        for j, ep in enumerate(endpoint.tolist()):
            yield {
                "ts": format_epoch_ms(ts[j]),
                "service": services[ep],
                "endpoint": paths[ep],
                "region": self._regions[region[j]],
                "status": status[j],
                "latency_ms": latency[j],
                "trace_id": traces[16 * j : 16 * j + 16],
            }

    def _latency(
        self, rng: np.random.Generator, endpoint: npt.NDArray[np.intp]
    ) -> npt.NDArray[np.float64]:
        log_latency = self._tables.log_median[endpoint]
        log_latency += self._tables.sigma[endpoint] * rng.standard_normal(CHUNK)
        latency = np.exp(log_latency)
        spikes = rng.random(CHUNK) < self.SPIKE_PROBABILITY
        latency[spikes] *= rng.uniform(*self.SPIKE_FACTOR, size=int(spikes.sum()))
        return latency

    def _status(
        self,
        rng: np.random.Generator,
        endpoint: npt.NDArray[np.intp],
        nominal_ms: npt.NDArray[np.int64],
    ) -> npt.NDArray[np.int64]:
        server_rate = np.full(CHUNK, self.SERVER_ERROR_RATE)
        second = nominal_ms // 1000
        service = self._tables.service_of[endpoint]
        for index, burst in self._tables.bursts:
            in_burst = (service == index) & burst.active(second)
            server_rate[in_burst] = burst.error_rate
        u = rng.random(CHUNK)
        code = rng.integers(0, len(self.SERVER_ERRORS), CHUNK)
        client_code = rng.integers(0, len(self.CLIENT_ERRORS), CHUNK)
        status = np.full(CHUNK, 200, dtype=np.int64)
        client = u < server_rate + self.CLIENT_ERROR_RATE
        status[client] = np.asarray(self.CLIENT_ERRORS)[client_code[client]]
        server = u < server_rate
        status[server] = np.asarray(self.SERVER_ERRORS)[code[server]]
        return status

    def _displace(
        self, rng: np.random.Generator, nominal_ms: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.int64]:
        late = rng.random(CHUNK) < self.disorder
        delay_ms = np.floor(rng.random(CHUNK) * (self.max_delay_s * 1000.0)).astype(np.int64)
        return nominal_ms - np.where(late, delay_ms, 0)


class _Tables:
    """The service catalogue flattened into per-endpoint arrays for vectorized lookups."""

    def __init__(self, services: tuple[Service, ...], bursts: Mapping[str, BurstSchedule]) -> None:
        flat = [(s_i, s, e) for s_i, s in enumerate(services) for e in s.endpoints]
        self.endpoint_cdf = cumulative([s.share * e.share for _, s, e in flat])
        self.service_of = np.array([s_i for s_i, _, _ in flat])
        self.service_names = [s.name for _, s, _ in flat]
        self.paths = [e.path for _, _, e in flat]
        self.log_median = np.log([e.median_ms for _, _, e in flat])
        self.sigma = np.array([e.sigma for _, _, e in flat])
        names = [s.name for s in services]
        unknown = set(bursts) - set(names)
        if unknown:
            raise GeneratorConfigError(f"bursts name unknown services {sorted(unknown)}")
        self.bursts = [(names.index(name), burst) for name, burst in bursts.items()]
