"""The ``eventlake`` command line: a thin layer that parses flags into settings
and dispatches to the commands."""
