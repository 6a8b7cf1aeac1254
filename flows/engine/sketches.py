"""Sketch states of the aggregations: picklable, and serialized in the output.

Apache DataSketches objects do not pickle; these holders pickle as the
sketches' own binary forms, which any DataSketches library reads, so they can
live in bytewax snapshots and in Parquet columns alike.
"""

from __future__ import annotations

from typing import Any

import datasketches as ds
import numpy as np

KLL_K = 200
"""KLL accuracy parameter: normalized rank error about 1.3% (99% confidence)."""
HLL_LG_K = 12
"""HLL size: relative standard error about 1.6%."""
TOPK_LG_MAX_MAP_SIZE = 7


class _Sketch:
    """Picklable holder of a DataSketches sketch: it pickles as its serialized bytes."""

    def __init__(self, sketch: Any) -> None:
        self.sketch = sketch

    def serialize(self) -> bytes:
        """The sketch's own binary form, readable by any DataSketches library."""
        return bytes(self.sketch.serialize())

    def __getstate__(self) -> bytes:
        return self.serialize()

    def __setstate__(self, data: bytes) -> None:
        self.sketch = self._deserialize(data)

    @staticmethod
    def _deserialize(data: bytes) -> Any:
        raise NotImplementedError


class KllState:
    """The values of a KLL quantile sketch of doubles, built lazily.

    A group keeps its values as they are while it has at most :data:`KLL_K` of
    them (creating and merging a sketch per small group costs far more than its
    events), and becomes a sketch beyond that. Answers are the same either way:
    a KLL sketch holds up to ``KLL_K`` values exactly.
    """

    def __init__(self, values: np.ndarray | None = None) -> None:
        self._values: np.ndarray | None = np.empty(0) if values is None else values
        self._sketch: Any = None

    def add(self, values: np.ndarray) -> None:
        """Add non-null float values."""
        if self._values is None:
            if len(values):
                self._sketch.update(values)
            return
        self._values = np.concatenate((self._values, values)) if len(self._values) else values
        if len(self._values) > KLL_K:
            self.sketch()

    def merge(self, other: KllState) -> None:
        """Add the values of ``other``."""
        if other._values is not None:
            self.add(other._values)
            return
        self.sketch().merge(other._sketch)

    def sketch(self) -> Any:
        """The state as a DataSketches ``kll_doubles_sketch`` (from now on)."""
        if self._values is not None:
            self._sketch = ds.kll_doubles_sketch(KLL_K)
            if len(self._values):
                self._sketch.update(self._values)
            self._values = None
        return self._sketch

    def serialize(self) -> bytes:
        """The sketch's own binary form, readable by any DataSketches library."""
        return bytes(self.sketch().serialize())

    def __getstate__(self) -> tuple[str, bytes]:
        if self._values is not None:
            return ("values", self._values.tobytes())
        return ("sketch", self.serialize())

    def __setstate__(self, state: tuple[str, bytes]) -> None:
        kind, data = state
        self._values, self._sketch = None, None
        if kind == "values":
            self._values = np.frombuffer(data, dtype=np.float64).copy()  # writable
        else:
            self._sketch = ds.kll_doubles_sketch.deserialize(data)


class HllState(_Sketch):
    """An HLL distinct-count sketch."""

    def serialize(self) -> bytes:
        return bytes(self.sketch.serialize_compact())

    @staticmethod
    def _deserialize(data: bytes) -> Any:
        return ds.hll_sketch.deserialize(data)


class FrequentState(_Sketch):
    """A frequent-items sketch of strings."""

    @staticmethod
    def _deserialize(data: bytes) -> Any:
        return ds.frequent_strings_sketch.deserialize(data)
