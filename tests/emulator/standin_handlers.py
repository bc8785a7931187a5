"""Tiny stand-in Lambda handlers: the emulator's tests run them through the local runtime."""

from __future__ import annotations

import decimal
import os
import time
from typing import Any

from aws_lambda_powertools import Logger

logger = Logger(service="standin")


class BusinessError(Exception):
    """A failure Step Functions should Catch."""


class TransientError(Exception):
    """A failure Step Functions should Retry."""


_transient_failures_left = {"count": 0}


def echo(event: Any, context: Any) -> Any:
    return {"event": event, "function": context.function_name}


def environment(event: Any, context: Any) -> dict[str, str]:
    return dict(os.environ)


def meddle(event: Any, context: Any) -> str:
    """Changes its own environment, as careless handler code might."""
    os.environ["SIDE_EFFECT"] = "left behind"
    os.environ["PIPELINE_TENANT"] = "changed"
    del os.environ["AWS_REGION"]
    return "done"


def describe_context(event: Any, context: Any) -> dict[str, Any]:
    return {
        "function_name": context.function_name,
        "function_version": context.function_version,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "invoked_function_arn": context.invoked_function_arn,
        "aws_request_id": context.aws_request_id,
        "log_group_name": context.log_group_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }


@logger.inject_lambda_context
def powertools(event: Any, context: Any) -> dict[str, str]:
    logger.info("standin.invoked")
    return {"service": logger.service}


def fail(event: Any, context: Any) -> Any:
    raise BusinessError(f"rejected {event.get('name', '?')}")


def flaky(event: Any, context: Any) -> Any:
    """Raises TransientError while `fail_times` (set by the test) lasts, then succeeds."""
    if _transient_failures_left["count"] > 0:
        _transient_failures_left["count"] -= 1
        raise TransientError("try again")
    return {"done": event.get("name")}


def set_transient_failures(count: int) -> None:
    _transient_failures_left["count"] = count


def decimals(event: Any, context: Any) -> Any:
    return {"price": decimal.Decimal("1.5")}


def unserialisable(event: Any, context: Any) -> Any:
    return {"when": object()}


def slow(event: Any, context: Any) -> Any:
    time.sleep(float(event["sleep_s"]))
    return {"slept": event["sleep_s"]}


def batch(event: Any, context: Any) -> dict[str, Any]:
    """Reports every record whose body contains "poison" as a batch item failure."""
    return {
        "batchItemFailures": [
            {"itemIdentifier": record["messageId"]}
            for record in event["Records"]
            if "poison" in record["body"]
        ]
    }


not_callable = 42
