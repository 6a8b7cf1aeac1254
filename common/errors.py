"""The one exception hierarchy of eventlake.

Every error a user can meet derives from :class:`EventlakeError`, and its
message says what to do about it. The CLI maps :class:`ConfigError` to exit
code 2 (usage or configuration), :class:`InterruptedRunError` to 130, and every other
:class:`EventlakeError` to 1.
"""


class EventlakeError(Exception):
    """Root of every error eventlake raises on purpose."""


class ConfigError(EventlakeError):
    """Invalid options or environment, detected before anything starts."""


class BrokerError(EventlakeError):
    """The embedded broker, or a Kafka cluster, failed at run time."""


class ClusterError(EventlakeError):
    """A process of a multi-process run failed; the others were stopped."""


class InterruptedRunError(EventlakeError):
    """The user stopped a run that had a set amount of work (exit code 130)."""


class InvalidMessageError(ValueError):
    """Why one message cannot become a row; the text goes to the dead-letter table."""


class OutputError(EventlakeError):
    """An output table could not be written while running (a full disk, permissions)."""


class ResourceError(EventlakeError):
    """The operating system refused a run something it needs while running (file
    descriptors); exit code 1."""


class LimitError(EventlakeError):
    """A run reached a limit it was given (``--max-open-windows``); it stops, losing nothing."""


class GapError(EventlakeError):
    """Offsets a flow still had to read are gone from Kafka, and ``--on-gap fail`` was set."""
