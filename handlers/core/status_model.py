"""The file status model (docs/architecture.md §3, a contract): values, their rank, which are
terminal.

Pure Python so that `stacks.spec` can build the state machine's rank conditions from it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class FileStatus(StrEnum):
    RECEIVED = "RECEIVED"
    VALIDATING = "VALIDATING"
    VALIDATED = "VALIDATED"
    PROCESSING = "PROCESSING"
    PROCESSED = "PROCESSED"
    AGGREGATING = "AGGREGATING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


# A write never lowers the rank; FAILED outranks everything so it can be written from any
# non-terminal state.
STATUS_RANK: Final[dict[FileStatus, int]] = {
    FileStatus.RECEIVED: 1,
    FileStatus.VALIDATING: 2,
    FileStatus.VALIDATED: 3,
    FileStatus.PROCESSING: 4,
    FileStatus.PROCESSED: 5,
    FileStatus.AGGREGATING: 6,
    FileStatus.COMPLETED: 7,
    FileStatus.FAILED: 99,
}

# Item attribute names (docs/architecture.md §3); `statusRank` is ours, it makes the rank
# condition a single numeric comparison.
STATUS_RANK_ATTRIBUTE: Final = "statusRank"
TTL_ATTRIBUTE: Final = "expirationTime"
OBJECT_KEY_INDEX: Final = "objectKey-index"

# Canary files (docs/architecture.md §7, verified rollouts): generated uploads under this prefix
# prove that an updated environment still processes a file. It lies under the bucket rule's
# `incoming/` (stacks.resources.INCOMING_PREFIX) so a canary takes the ordinary path; ingest marks
# its status item with `canary: true`, and listings and counts leave marked items out.
CANARY_PREFIX: Final = "incoming/.canary/"
CANARY_ATTRIBUTE: Final = "canary"


def is_canary_key(object_key: str) -> bool:
    return object_key.startswith(CANARY_PREFIX)


# Pipeline stages, as recorded in `stage` and in `error.stage`.
STAGES: Final = ("ingest", "validator", "processor", "aggregator")

# Item fields shown outside the pipeline (docs/architecture.md §3 plus the retry bookkeeping), by
# the status API and the provisioner alike; internal ones such as statusRank and executionArn
# stay inside.
PUBLIC_ITEM_FIELDS: Final = (
    "fileId",
    "bucket",
    "objectKey",
    "versionId",
    "status",
    "stage",
    "receivedAt",
    "updatedAt",
    "expirationTime",
    "attempt",
    "rowCount",
    "rejectedRows",
    "symbols",
    "symbolCount",
    "resultKey",
    "error",
    "lastError",
    CANARY_ATTRIBUTE,
)
