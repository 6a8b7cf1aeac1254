"""Test-only fault injection: die at an exact moment of a file commit.

``EVENTLAKE_FAULT=MOMENT:N`` makes the process SIGKILL itself the N-th time it
reaches ``MOMENT`` (``before_rename``, ``after_rename``, ``before_snapshot`` or
``after_publish``), so crash tests can hit the moments between write, rename,
snapshot and publication that a random kill rarely does. Unset, it costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

MOMENTS = ("before_rename", "after_rename", "before_snapshot", "after_publish")
_reached: Counter[str] = Counter()


def crash_point(moment: str) -> None:
    """SIGKILL this process if ``EVENTLAKE_FAULT`` names this moment and count."""
    fault = os.environ.get("EVENTLAKE_FAULT")
    if not fault:
        return
    name, _, count = fault.partition(":")
    if name != moment:
        return
    _reached[moment] += 1
    if _reached[moment] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
