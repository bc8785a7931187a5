"""Process stage: stream the object version again and compute per-symbol statistics.

The stage returns `{rows, rejectedRows, symbolCount}` and the statistics: inline (`symbols`)
when their JSON fits `INLINE_STATS_BUDGET`, which saves the aggregator an S3 round trip; else,
since they grow with the symbols and Step Functions carries at most 256 KB of state, in
`s3://{bucket}/{WORK_PREFIX}{fileId}/stats.json`, named by `statsKey`.
"""

from __future__ import annotations

import json
from typing import Any, Final

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from handlers.core import runtime
from handlers.core.marketdata import scan
from handlers.core.s3stream import iter_object, write_json
from handlers.core.stage import StageRequest, logs_failures, result_int, stage_result

logger = Logger()

# Bytes of compact JSON the statistics may take inline: about 150 symbols, well inside the
# 256 KB Step Functions allows the whole execution state (which also holds the other stages').
INLINE_STATS_BUDGET: Final = 32_768


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
    symbols = {sym: stats.as_json() for sym, stats in result.symbols.items()}
    figures = {
        "rows": result.rows,
        "rejectedRows": result.rejected_rows,
        "symbolCount": len(result.symbols),
    }
    if len(json.dumps(symbols, separators=(",", ":"))) <= INLINE_STATS_BUDGET:
        logger.info("file.processed", extra={**figures, "statsInline": True})
        return {**figures, "symbols": symbols}
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
            "symbols": symbols,
        },
    )
    logger.info("file.processed", extra={**figures, "statsKey": key})
    return {**figures, "statsKey": key}
