"""File identity (docs/architecture.md §2): one id per object version, safe in URL paths and
execution names."""

from __future__ import annotations

import hashlib
import re
from typing import Final

FILE_ID_PATTERN: Final = re.compile(r"[0-9a-f]{64}")


def file_id(bucket: str, object_key: str, version_id: str) -> str:
    """sha256 hex of "bucket/key#versionId" (the key decoded, as stored in S3)."""
    return hashlib.sha256(f"{bucket}/{object_key}#{version_id}".encode()).hexdigest()


def is_file_id(value: str) -> bool:
    return FILE_ID_PATTERN.fullmatch(value) is not None


def execution_name(file_id: str, attempt: int = 1) -> str:
    """The Step Functions execution of one attempt. Names stay reserved for 90 days after an
    execution closes, so a retry (attempt > 1) needs a name of its own."""
    return file_id if attempt <= 1 else f"{file_id}-{attempt}"
