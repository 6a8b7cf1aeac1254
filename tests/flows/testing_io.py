"""Flows without a broker: messages batched as the Kafka source batches them, fed to the
dataflow through ``bytewax.testing.TestingSource`` (the source seam of
:class:`~flows.runtime.dataflow.FlowIO`); tables still go to real Parquet files."""

from __future__ import annotations

from itertools import islice

from bytewax.testing import TestingSource

from flows.runtime.dataflow import FlowIO
from sources.batches import DecodedBatch, RawBatch
from sources.decode import JsonDecoder
from sources.generators.base import EventGenerator
from sources.kafka_source import ReadOptions
from sources.producer import encode_event

Partitions = list[list[bytes]]
"""Message values per partition, in offset order."""


def generated(generator: EventGenerator, count: int, partitions: int) -> Partitions:
    """``count`` events of ``generator`` as the producer encodes them, dealt over
    ``partitions`` in turn."""
    values = [encode_event(event) for event in islice(generator.events(), count)]
    return [values[index::partitions] for index in range(partitions)]


def memory_io(partitions: Partitions, batch_size: int = 1000) -> FlowIO:
    """Kafka replaced by ``partitions``, read ``batch_size`` messages at a time."""

    def source(
        _settings: object, decoder: JsonDecoder, options: ReadOptions, _metrics: object
    ) -> TestingSource[DecodedBatch]:
        return TestingSource(batches(decoder, partitions, batch_size, options.execution))

    return FlowIO(source=source)


def batches(
    decoder: JsonDecoder, partitions: Partitions, batch_size: int, execution: int = 0
) -> list[DecodedBatch]:
    """What the Kafka source makes of ``partitions``: each read in turn, ``batch_size``
    messages at a time, decoded, with each partition's progress and end marked."""
    made: list[DecodedBatch] = []
    newest: dict[int, int] = {}
    rounds = max((len(values) for values in partitions), default=0) // batch_size + 1
    for round_number in range(rounds):
        for partition, values in enumerate(partitions):
            start = round_number * batch_size
            if start >= len(values) and start > 0:
                continue
            chunk = values[start : start + batch_size]
            offsets = list(range(start, start + len(chunk)))
            raw = RawBatch("testing", partition, offsets, [None] * len(chunk), list(chunk),
                           [0] * len(chunk))  # fmt: skip
            batch = decoder.decode(raw)
            batch.topic, batch.partition, batch.partitions = "testing", partition, len(partitions)
            batch.execution, batch.prior_max_us = execution, newest.get(partition)
            batch.ended = start + batch_size >= len(values)
            if batch.max_us is not None:
                newest[partition] = max(newest.get(partition, batch.max_us), batch.max_us)
            made.append(batch)
    return made
