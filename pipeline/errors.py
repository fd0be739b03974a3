"""The pipeline package's error hierarchy.

Transient errors are retried (with backoff, by the caller or by Prefect); terminal errors
are not: they go to a dead-letter row or fail the run with a message that says what to fix.
"""


class PipelineError(Exception):
    """Root of every error raised by the pipeline package."""


class TransientPipelineError(PipelineError):
    """Worth retrying: a broker, the CRM or a lock may come back."""


class TerminalPipelineError(PipelineError):
    """Retrying will not help until someone fixes data or configuration."""


class StoreError(TerminalPipelineError):
    """The DuckDB store cannot be opened or migrated."""


class BrokerError(TransientPipelineError):
    """The MQTT broker cannot be reached or started."""


class DeliveryError(TransientPipelineError):
    """A CRM delivery failed in a way a later attempt may fix (timeout, 5xx, 429)."""


class RejectedError(TerminalPipelineError):
    """The CRM refused a delivery for good (4xx other than 408/429)."""


class NotEnoughDataError(TerminalPipelineError):
    """There is too little data to train or score; the message says what is missing."""


class ConsoleError(TerminalPipelineError):
    """The evidence console cannot serve (its address is taken or cannot be bound)."""
