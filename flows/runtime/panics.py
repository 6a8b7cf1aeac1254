"""Keep bytewax's Rust panic reports off the terminal while a dataflow runs.

bytewax turns an error raised in a Python step into a Rust panic, and Rust's panic hook
writes ``thread '…' panicked at …`` (with ``RUST_BACKTRACE``, a hundred lines of
backtrace more) straight to file descriptor 2 before the error reaches Python again.
The command then reports that error in one line (a full disk: what happened, nothing
lost, how to resume), so while a dataflow runs fd 2 passes through a filter that drops
each such block and forwards everything else as it comes, partial lines included (a
terminal's status line redraws without a newline).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator

_PANIC = re.compile(rb"thread '[^']*' panicked at ")
_PANIC_START = b"thread '"
_PANIC_END = b"note: "
"""Both forms of the block end with a line starting so (RUST_BACKTRACE set or not)."""
_UNDECIDED_MAX = 512


class PanicFilter:
    """Bytes written to fd 2, forwarded to ``forward`` without Rust panic blocks."""

    def __init__(self, forward: int) -> None:
        self._forward = forward
        self._line = b""
        """The current line's bytes not forwarded yet."""
        self._passing = False
        """The current line is not part of a panic block: forward as it comes."""
        self._in_panic = False

    def feed(self, data: bytes) -> None:
        """Forward what ``data`` holds outside panic blocks (a line that may start one
        waits for its end)."""
        for piece in data.splitlines(keepends=True):
            if self._passing:
                os.write(self._forward, piece)
            else:
                self._line += piece
                self._decide(complete=piece.endswith(b"\n"))
            if piece.endswith(b"\n"):
                self._line, self._passing = b"", False

    def _decide(self, complete: bool) -> None:
        line = self._line
        if self._in_panic:
            self._in_panic = not (complete and line.startswith(_PANIC_END))
            return
        if complete and _PANIC.match(line):
            self._in_panic = True
        elif complete or not _PANIC_START.startswith(line[:8]) or len(line) > _UNDECIDED_MAX:
            os.write(self._forward, line)
            self._line, self._passing = b"", not complete


@contextlib.contextmanager
def panics_unprinted() -> Iterator[None]:
    """While inside, fd 2 goes through a :class:`PanicFilter` to where it went before."""
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    threading.Thread(target=_filter, args=(read_end, original), daemon=True).start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(original, 2)  # the filter ends once no process writes to the pipe


def _filter(read_end: int, original: int) -> None:
    panic_filter = PanicFilter(original)
    with contextlib.suppress(OSError):
        while data := os.read(read_end, 65_536):
            panic_filter.feed(data)
    os.close(read_end)
    os.close(original)
