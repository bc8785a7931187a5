"""Typed failures of the pipeline stages.

The state machine's Catch and Retry match these by class name (Lambda reports an unhandled
exception's class name as `errorType`), so renaming a class is a contract change:
`stacks.state_machine` imports the tuples below to build its Catch and Retry rules.
"""

from __future__ import annotations

from typing import Final

MAX_MESSAGE: Final = 1000


class PipelineError(Exception):
    """Base of the business failures: the file is at fault, retrying cannot help.

    The message becomes the file's recorded `error.message`: it is kept to 1000 characters
    (an object key alone may be 1024 bytes).
    """

    def __init__(self, message: str) -> None:
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 1] + "…"
        super().__init__(message)


class InvalidFileError(PipelineError):
    """Not a UTF-8 CSV with the expected header, empty, or too many bad rows."""


class ObjectNotFoundError(PipelineError):
    """The object version the execution refers to no longer exists."""


class ResultTooLargeError(PipelineError):
    """The computed result cannot be stored (e.g. beyond Step Functions' payload limit)."""


class MalformedEventError(ValueError):
    """An event or stage payload does not have the shape the handler expects.

    Not a business error: it means a wiring bug or a foreign message, so it is not caught by
    name; an ingest record that raises it goes back to the queue and ends in the ingest DLQ.
    """


class ConfigurationError(RuntimeError):
    """A function's environment variable is missing or invalid (a deployment bug)."""


# Caught by name and recorded as the file's FAILED reason; never retried.
BUSINESS_ERRORS: Final = (
    InvalidFileError.__name__,
    ObjectNotFoundError.__name__,
    ResultTooLargeError.__name__,
)

# Exceptions from the AWS SDK inside handler code that are worth retrying: throttling, 5xx and
# network failures. botocore raises them under these class names.
RETRYABLE_FUNCTION_ERRORS: Final = (
    "ClientError",
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ConnectionClosedError",
    # Modelled service errors reach Lambda under their own class names (botocore builds one
    # class per error code); these are the transient ones of the services the handlers call.
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
    "SlowDown",
    "ServiceUnavailable",
)
