"""Progress lines: counts, rates, totals, and the summary."""

from __future__ import annotations

import io

from common.progress import Progress


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_reports_counts_rate_and_summary() -> None:
    stream, clock = io.StringIO(), Ticks()
    progress = Progress("produce", total=1000, stream=stream, clock=clock)
    clock.now += 10
    progress.advance(500)
    progress.advance(100)  # within the interval: not shown
    clock.now += 10
    progress.advance(400)
    progress.finish("done")
    lines = stream.getvalue().splitlines()
    assert lines == [
        "produce: 500/1,000 events, 50 events/s",
        "produce: 1,000/1,000 events, 50 events/s",
        "produce: 1,000/1,000 events, 50 events/s in 20.0s. done",
    ]


def test_expected_total_accumulates() -> None:
    progress = Progress("read", stream=io.StringIO())
    progress.expect(10)
    progress.expect(5)
    assert progress.total == 15
