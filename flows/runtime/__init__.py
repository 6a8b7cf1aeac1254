"""Running a flow: its settings, the dataflow that joins a source, the engine and
the sinks, checkpoints and the definition a resume must match, and one or several
processes."""
