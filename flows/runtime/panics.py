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
_PANIC_LINES = re.compile(rb"\s|stack backtrace:|note: ")
"""After its first line and the message, what a panic block's lines start with: a frame
(indented), the backtrace's header, a note (Rust adds ``note: run with RUST_BACKTRACE``
only to a process's first panic, so a block ends at the first line of another kind)."""
_UNDECIDED_MAX = 512
_DRAIN_S = 1.0
"""How long the end of a run waits for the filter to forward what is left (a helper
process that inherited fd 2 may keep it open longer)."""


class PanicFilter:
    """Bytes written to fd 2, forwarded to ``forward`` without Rust panic blocks."""

    def __init__(self, forward: int) -> None:
        self._forward = forward
        self._line = b""
        """The current line's bytes not forwarded yet."""
        self._passing = False
        """The current line is not part of a panic block: forward as it comes."""
        self._panic_lines = -1
        """Lines of the current panic block so far (-1: outside one)."""

    def feed(self, data: bytes) -> None:
        """Forward what ``data`` holds outside panic blocks (a line that may start one
        waits for its end). A carriage return starts a line, as a terminal's status line
        redraws."""
        for piece in re.split(rb"(?<=[\n\r])", data):
            if not piece:
                continue
            if self._passing:
                os.write(self._forward, piece)
            else:
                self._line += piece
                self._decide(complete=piece[-1:] in (b"\n", b"\r"))
            if piece[-1:] in (b"\n", b"\r"):
                self._line, self._passing = b"", False

    def flush(self) -> None:
        """Forward a line still waiting to be decided (the writer is gone)."""
        if self._line and self._panic_lines < 0:
            os.write(self._forward, self._line)
        self._line = b""

    def _decide(self, complete: bool) -> None:
        line = self._line
        if self._panic_lines >= 0 and complete:
            self._panic_lines += 1
            if self._panic_lines == 1 or _PANIC_LINES.match(line):  # the message, frames
                self._panic_lines = -1 if line.startswith(b"note: ") else self._panic_lines
                return
            self._panic_lines = -1  # a line of something else: the block has ended
        if self._panic_lines >= 0:
            return
        if complete and _PANIC.match(line):
            self._panic_lines = 0
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
    filtering = threading.Thread(target=_filter, args=(read_end, original), daemon=True)
    filtering.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(original, 2)  # the filter ends once no process writes to the pipe
        filtering.join(timeout=_DRAIN_S)  # what the run wrote comes before what follows


def _filter(read_end: int, original: int) -> None:
    panic_filter = PanicFilter(original)
    with contextlib.suppress(OSError):
        while data := os.read(read_end, 65_536):
            panic_filter.feed(data)
        panic_filter.flush()
    os.close(read_end)
    os.close(original)
