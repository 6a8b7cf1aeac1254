"""The windowing engine: windows, aggregations and their states, table specs,
pre-aggregation of batches, routing to shards, and the shards that merge and
close windows (:mod:`flows.engine.shard`) and sessions
(:mod:`flows.engine.sessions`). It knows nothing of Kafka, files or the CLI."""
