"""A run's figures: recorded by threads, added up, merged across processes, sent as JSON."""

from __future__ import annotations

import json
import threading

from common.metrics import RunFigures, RunMetrics


def _two_processes() -> tuple[RunMetrics, RunMetrics]:
    """Partitions 0 and 1 read by one process, 2 by the other; shards split likewise."""
    first, second = RunMetrics(clock=lambda: 100.0), RunMetrics(clock=lambda: 90.0)
    first.opened(0, of=3, position=10, end=50, stop_at=50)
    first.read(0, events=30, position=40, dead_letters=2)
    first.opened(1, of=3, position=0, end=20, stop_at=20)
    first.read(1, events=20, position=20, dead_letters=0)
    second.opened(2, of=3, position=0, end=70, stop_at=70)
    second.read(2, events=5, position=5, dead_letters=1)
    second.gap(2, missing=15, position=20)
    first.shard("t", 0, watermark_us=7_000, open_windows=3, late_rows=1)
    first.shard("t", 0, watermark_us=9_000, open_windows=2, late_rows=4)
    second.shard("t", 1, watermark_us=8_000, open_windows=5, late_rows=0)
    second.shard("u", 2, watermark_us=None, open_windows=0, late_rows=0)
    first.rows("t", "0", 6)
    first.rows("t", "0", 4)
    second.rows("t", "1", 1)
    second.rows("dead_letter", "2", 3)
    return first, second


def test_figures_add_up_over_partitions_shards_and_processes() -> None:
    first, second = _two_processes()
    figures = first.figures().merged(second.figures())
    assert figures.events() == 30 + 20 + 5
    assert figures.lag() == (50 - 40) + (20 - 20) + (70 - 20)
    assert figures.total() == figures.events() + 10 + 0 + 50
    assert figures.per_partition("dead_letters") == 3
    assert (figures.per_partition("gaps"), figures.per_partition("gap_offsets")) == (1, 15)
    assert figures.watermarks_us() == {"t": 8_000}  # the slowest shard; none yet for u
    assert figures.per_table("open_windows") == {"t": 2 + 5, "u": 0}
    assert figures.per_table("late_rows") == {"t": 5, "u": 0}
    assert figures.table_rows() == {"t": 11, "dead_letter": 3}
    assert figures.active_at == 100.0  # the process heard from last
    assert first.figures().lag() == 10 and not first.figures().complete()  # 2 is elsewhere
    assert first.figures().total() is None and figures.complete()


def test_lag_is_over_the_partitions_that_reported_and_unknown_without_an_end() -> None:
    metrics = RunMetrics()
    assert metrics.figures().lag() is None  # nothing reported
    metrics.opened(0, of=2, position=0, end=10, stop_at=None)  # unbounded: no total
    assert metrics.figures().lag() == 10 and not metrics.figures().complete()
    metrics.read(1, events=3, position=3, dead_letters=0)  # its end not seen yet
    assert (metrics.figures().lag(), metrics.figures().total()) == (None, None)
    metrics.polled(1, position=3, end=8)
    assert metrics.figures().lag() == 10 + 5
    metrics.polled(1, position=4, end=None)  # past a marker; librdkafka has not fetched
    assert metrics.figures().lag() == 10 + 4
    metrics.read(1, events=6, position=10, dead_letters=0)  # read past a stale end
    assert metrics.figures().partitions[1].end == 10
    metrics.polled(1, position=10, end=9)  # an older fetch
    assert (metrics.figures().partitions[1].end, metrics.figures().lag()) == (10, 10)


def test_figures_travel_as_json_unchanged() -> None:
    first, second = _two_processes()
    figures = first.figures().merged(second.figures())
    assert RunFigures.from_json(json.loads(json.dumps(figures.to_json()))) == figures


def test_threads_may_record_at_once() -> None:
    metrics = RunMetrics()

    def read(partition: int) -> None:
        for position in range(1, 2001):
            metrics.read(partition, events=1, position=position, dead_letters=0)
            metrics.rows("t", str(partition), 1)

    threads = [threading.Thread(target=read, args=(part,)) for part in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert metrics.figures().events() == metrics.figures().table_rows()["t"] == 8000
