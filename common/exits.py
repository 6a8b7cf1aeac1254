"""How a child process ended, in words."""

from __future__ import annotations

import signal


def exit_description(returncode: int) -> str:
    """``was killed by SIGKILL`` (for a negative ``returncode``, as
    :class:`subprocess.Popen` reports a signal), else ``exited with code N``."""
    if returncode < 0:
        return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}"
