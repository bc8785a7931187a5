"""Validate stage: stream the uploaded object version and check it against docs/architecture.md §4.

Returns `{"rows", "rejectedRows"}`; raises InvalidFileError (caught by name by the state
machine) when the file is rejected, ObjectNotFoundError when the version is gone.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from handlers.core import runtime
from handlers.core.marketdata import DEFAULT_MAX_BAD_ROW_RATIO, scan
from handlers.core.s3stream import iter_object
from handlers.core.stage import StageRequest, logs_failures

logger = Logger()


@logger.inject_lambda_context(correlation_id_path="fileId", clear_state=True)
@logs_failures(logger)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    runtime.bind_invocation(logger)
    request = StageRequest.from_event(event)
    ratio = runtime.env_float("MAX_BAD_ROW_RATIO", DEFAULT_MAX_BAD_ROW_RATIO, low=0.0, high=1.0)
    chunks = iter_object(request.bucket, request.object_key, request.version_id)
    result = scan(chunks, max_bad_row_ratio=ratio, aggregate=False)
    logger.info(
        "file.validated",
        extra={
            "rows": result.rows,
            "rejectedRows": result.rejected_rows,
            "attempt": request.attempt,
        },
    )
    return {"rows": result.rows, "rejectedRows": result.rejected_rows}
