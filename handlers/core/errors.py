"""Typed failures of the pipeline stages.

The state machine's Catch and Retry match these by class name (Lambda reports an unhandled
exception's class name as `errorType`), so renaming a class is a contract change:
`stacks.state_machine` imports the tuples below to build its Catch and Retry rules.
"""

from __future__ import annotations

from typing import Final


class PipelineError(Exception):
    """Base of the business failures: the file is at fault, retrying cannot help."""


class InvalidFileError(PipelineError):
    """Not a UTF-8 CSV with the expected header, empty, or too many bad rows."""


class ObjectNotFoundError(PipelineError):
    """The object version the execution refers to no longer exists."""


class ResultTooLargeError(PipelineError):
    """The computed result cannot be stored (e.g. beyond Step Functions' payload limit)."""


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
)
