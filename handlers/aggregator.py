"""Aggregate stage: publish `results/{fileId}.json` (docs/architecture.md §4), merge the summary.

Takes the processor's statistics (inline in its result, or from the intermediate object it
names), writes the results document, merges `rowCount`, `rejectedRows`, `symbols` (when it fits
the item), `symbolCount` and `resultKey` into the status item, then deletes the intermediate
object, if there was one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from handlers.core import runtime
from handlers.core.errors import MalformedEventError, ObjectNotFoundError
from handlers.core.s3stream import read_json, write_json
from handlers.core.stage import StageRequest, logs_failures, result_int, stage_result
from handlers.core.status_store import FileSummary, StatusStore, symbols_fit_item
from handlers.core.symbol_stats import SymbolStats

logger = Logger()


def result_key(results_prefix: str, file_id: str) -> str:
    return f"{results_prefix}{file_id}.json"


def results_document(request: StageRequest, stats: Mapping[str, Any]) -> dict[str, Any]:
    """The published shape, exactly docs/architecture.md §4, from the processor's statistics."""
    symbols = stats.get("symbols")
    if not isinstance(symbols, Mapping):
        raise MalformedEventError("statistics object has no symbols map")
    return {
        "fileId": request.file_id,
        "objectKey": request.object_key,
        "rows": result_int(stats, "rows"),
        "rejectedRows": result_int(stats, "rejectedRows"),
        # round-trip through SymbolStats: exactly the nine published fields, typed
        "symbols": {
            str(sym): SymbolStats.from_json(values).as_json()
            for sym, values in sorted(symbols.items())
        },
    }


@logger.inject_lambda_context(correlation_id_path="fileId", clear_state=True)
@logs_failures(logger)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    runtime.bind_invocation(logger)
    request = StageRequest.from_event(event)
    processing = stage_result(event, "processing")
    key = result_key(runtime.require_env("RESULTS_PREFIX"), request.file_id)
    store = StatusStore.from_env()
    stats_key = processing.get("statsKey")
    if "symbols" in processing:
        # Inline: the processor's result is the statistics (a retry simply publishes again).
        document = results_document(request, processing)
        write_json(request.bucket, key, document)
    elif not isinstance(stats_key, str) or not stats_key:
        raise MalformedEventError("processing.result has neither symbols nor statsKey")
    else:
        document = _from_intermediate(request, stats_key, key)
    symbols = document["symbols"]
    summary = FileSummary(document["rows"], document["rejectedRows"], symbols, key)
    if not store.merge_summary(request.file_id, summary):
        # The status is already final (e.g. a newer attempt failed it): leave it alone.
        logger.warning("status.already_final", extra={"resultKey": key})
    if stats_key:
        # A plain delete: on the versioned bucket it leaves a delete marker, which is all the
        # function's policy allows (s3:DeleteObject on work/*).
        runtime.s3().delete_object(Bucket=request.bucket, Key=stats_key)
    logger.info(
        "file.aggregated",
        extra={
            "resultKey": key,
            "symbolCount": len(symbols),
            "symbolsInItem": symbols_fit_item(symbols),
        },
    )
    return {
        "resultKey": key,
        "rows": document["rows"],
        "rejectedRows": document["rejectedRows"],
        "symbolCount": len(symbols),
    }


def _from_intermediate(request: StageRequest, stats_key: str, key: str) -> dict[str, Any]:
    """The results document from the intermediate statistics object (published here)."""
    try:
        document = results_document(request, read_json(request.bucket, stats_key))
    except ObjectNotFoundError:
        # A previous run of this task may have published and cleaned up before failing to
        # return: if the results exist, finish from them; otherwise the stats are really lost.
        try:
            document = read_json(request.bucket, key)
        except ObjectNotFoundError:
            raise ObjectNotFoundError(
                f"intermediate statistics not found: s3://{request.bucket}/{stats_key}"
            ) from None
        logger.info("results.reused", extra={"resultKey": key})
    else:
        write_json(request.bucket, key, document)
    return document
