"""Process stage: stream the object version again and compute per-symbol statistics.

The statistics can be large (one entry per symbol) and Step Functions payloads are limited to
256 KB, so they go to `s3://{bucket}/{WORK_PREFIX}{fileId}/stats.json` and the stage returns
only `{statsKey, rows, rejectedRows, symbolCount}`.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from handlers.core import runtime
from handlers.core.marketdata import scan
from handlers.core.s3stream import iter_object, write_json
from handlers.core.stage import StageRequest, logs_failures, result_int, stage_result

logger = Logger()


def stats_key(work_prefix: str, file_id: str) -> str:
    return f"{work_prefix}{file_id}/stats.json"


@logger.inject_lambda_context(correlation_id_path="fileId", clear_state=True)
@logs_failures(logger)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    runtime.bind_invocation(logger)
    request = StageRequest.from_event(event)
    validation = stage_result(event, "validation")
    work_prefix = runtime.require_env("WORK_PREFIX")
    chunks = iter_object(request.bucket, request.object_key, request.version_id)
    # The validator already applied the bad-row threshold to this very version: here bad rows
    # are only counted and skipped.
    result = scan(chunks, max_bad_row_ratio=None, aggregate=True)
    expected = (result_int(validation, "rows"), result_int(validation, "rejectedRows"))
    if (result.rows, result.rejected_rows) != expected:
        logger.warning(
            "file.counts_differ",
            extra={"validated": expected, "processed": (result.rows, result.rejected_rows)},
        )
    key = stats_key(work_prefix, request.file_id)
    write_json(
        request.bucket,
        key,
        {
            "fileId": request.file_id,
            "objectKey": request.object_key,
            "versionId": request.version_id,
            "rows": result.rows,
            "rejectedRows": result.rejected_rows,
            "symbols": {sym: stats.as_json() for sym, stats in result.symbols.items()},
        },
    )
    logger.info(
        "file.processed",
        extra={"rows": result.rows, "symbolCount": len(result.symbols), "statsKey": key},
    )
    return {
        "statsKey": key,
        "rows": result.rows,
        "rejectedRows": result.rejected_rows,
        "symbolCount": len(result.symbols),
    }
