"""Before a run connects its Kafka consumers: may this process hold what they need?

A run reads every Kafka partition with a consumer of its own (:mod:`sources.kafka_source`),
and each consumer holds descriptors and threads (:mod:`sources.consumer_cost`): 300
partitions take about 2,400 descriptors and 1,200 threads. Under ``ulimit -n 1024`` such a
run used to meet "Too many open files" while connecting, which librdkafka reports as a
connection error ("waiting for Kafka ... nothing is lost"), and crashed a minute later.

Why a check, not consumers shared among the partitions of a worker: a shared consumer
hands out the messages of all its partitions to whichever reader polls it, so the readers
would buffer for one another, pause and resume partitions and seek one partition within
a shared fetch: a second prefetch layer beside librdkafka's, with its own memory budget
and failure cases, in the path of every message. What users meet is covered far more
simply: before the run makes its readers, what the partitions this process will read
need (one consumer measured, times their number) is compared with its limits,
``RLIMIT_NOFILE`` and ``RLIMIT_NPROC`` (which counts threads).
A soft limit below the need is raised to the need where the hard limit allows (as servers
commonly do); otherwise the run exits 2 naming the need, the limit and the fixes: a higher
limit, or more processes so that each reads fewer partitions.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

from common.errors import ConfigError
from common.log import LOGGER
from flows.runtime.settings import FlowSettings
from sources.consumer_cost import measure_consumer, open_descriptors, running_threads

OTHER_DESCRIPTORS = 128
"""The most a run holds open besides its consumers and recovery partitions: bytewax, the
Parquet files of a roll, connections between processes (measured: 90 on 16 partitions)."""
DESCRIPTORS_PER_RECOVERY_PARTITION = 3
"""The SQLite files of a recovery partition, as bytewax and the sinks hold them (measured)."""
OTHER_THREADS = 32
"""The most threads a run starts besides its consumers: bytewax's workers and their helpers,
the status line, the metrics endpoint (measured: 6 with one worker)."""
HEADROOM = 2
"""Where the hard limit is unlimited, a raised soft limit is this many times the need."""


@dataclass(frozen=True)
class _Limit:
    """A limit of the process, as ``resource`` and the shell name it."""

    resource: int
    holds: str
    shell: str
    service: str
    """Its name in a systemd unit."""


OPEN_FILES = _Limit(resource.RLIMIT_NOFILE, "open files", "ulimit -n", "LimitNOFILE")
THREADS = _Limit(resource.RLIMIT_NPROC, "threads", "ulimit -u", "LimitNPROC")


@dataclass(frozen=True)
class _Need:
    """What this process needs of one limit, by the number of its consumers."""

    limit: _Limit
    fixed: int
    """Held now, plus what the rest of the run takes."""
    per_consumer: int

    def of(self, consumers: int) -> int:
        """The need with ``consumers`` consumers."""
        return self.fixed + consumers * self.per_consumer


@dataclass(frozen=True)
class _Spread:
    """How a topic's partitions are spread over the run's processes and workers."""

    topic: str
    partitions: int
    workers: int
    processes: int

    def here(self, processes: int | None = None) -> int:
        """The most partitions one process reads (with ``processes`` instead of the run's)."""
        return partitions_per_process(self.partitions, self.workers, processes or self.processes)


def partitions_per_process(partitions: int, workers: int, processes: int) -> int:
    """The most of a topic's ``partitions`` that one of ``processes`` processes of
    ``workers`` workers each reads: bytewax gives every worker of a run an equal share,
    give or take one."""
    return min(partitions, workers * -(-partitions // (workers * processes)))


def make_room_for_consumers(settings: FlowSettings, partitions: int) -> None:
    """Make sure this process may hold the descriptors and threads that its consumers of
    ``settings.topic`` (of ``partitions`` partitions) need, raising soft limits where the
    hard ones allow (and saying so); ConfigError naming the need, the limit and the fixes
    where they do not. Measures one consumer, asking Kafka patiently; where there is no
    ``/proc`` to count with, checks nothing. Threads of the user's other processes also
    count against ``RLIMIT_NPROC``; only this process's are counted."""
    cost = measure_consumer(settings.target, settings.topic, partitions)
    if cost is None:
        return
    checkpointing = settings.checkpointing
    recovery = 0 if checkpointing is None else checkpointing.partitions
    other_descriptors = OTHER_DESCRIPTORS + recovery * DESCRIPTORS_PER_RECOVERY_PARTITION
    spread = _Spread(settings.topic, partitions, settings.workers, settings.processes.count)
    _make_room(_Need(OPEN_FILES, open_descriptors() + other_descriptors, cost.descriptors), spread)
    _make_room(_Need(THREADS, running_threads() + OTHER_THREADS, cost.threads), spread)


def _make_room(need: _Need, spread: _Spread) -> None:
    """Raise the soft limit if it is below the need, as far as the hard one allows (the
    need is an estimate: a consumer's sockets come and go); ConfigError if the hard one
    is below the need."""
    wanted = need.of(spread.here())
    soft, hard = resource.getrlimit(need.limit.resource)
    if soft == resource.RLIM_INFINITY or wanted <= soft:
        return
    if hard == resource.RLIM_INFINITY or wanted <= hard:
        for raised in (hard, HEADROOM * wanted):  # infinity may be refused (fs.nr_open)
            if wanted <= raised and _raised(need.limit, raised, hard):
                LOGGER.info(
                    "raised this process's limit of %s from %s to %s (hard limit %s) for its "
                    "%s Kafka consumers, which need about %s", need.limit.holds, f"{soft:,}",
                    _shown(raised), _shown(hard), f"{spread.here():,}", f"{wanted:,}",
                )  # fmt: skip
                return
    raise ConfigError(_refusal(need, spread, soft, hard))


def _raised(limit: _Limit, soft: int, hard: int) -> bool:
    """Whether the soft ``limit`` could be set to ``soft``."""
    try:
        resource.setrlimit(limit.resource, (soft, hard))
    except (ValueError, OSError):  # beyond what the kernel allows (fs.nr_open)
        return False
    return True


def _refusal(need: _Need, spread: _Spread, soft: int, hard: int) -> str:
    """Why the run cannot start, and the ways out."""
    limit, consumers = need.limit, spread.here()
    wanted = need.of(consumers)
    fixes = [
        f"raise the limit (`{limit.shell} {wanted}` in the shell that starts the run, "
        f"{limit.service}={wanted} in a systemd unit; above the hard limit needs root)"
    ]
    processes = _enough_processes(need, spread, hard)
    if processes is not None:
        fixes.append(
            f"spread the partitions over {processes} processes, each reading fewer "
            f"(--processes {processes} on one host, or {processes} processes with -i/-a)"
        )
    return (
        f"reading {consumers:,} partitions of {spread.topic!r} in this process takes about "
        f"{wanted:,} {limit.holds} ({need.per_consumer} for each partition's Kafka consumer, "
        f"{need.fixed:,} for the rest of the run), but it may have {soft:,} (`{limit.shell}`, "
        f"hard limit {_shown(hard)}): {', or '.join(fixes)}"
    )


def _enough_processes(need: _Need, spread: _Spread, hard: int) -> int | None:
    """The fewest processes, more than the run has, whose share of the partitions fits
    under ``hard``; None if even one partition per process does not."""
    for processes in range(spread.processes + 1, spread.partitions + 1):
        if need.of(spread.here(processes)) <= hard:
            return processes
    return None


def _shown(limit: int) -> str:
    return "unlimited" if limit == resource.RLIM_INFINITY else f"{limit:,}"
