"""Stream one S3 object version as byte chunks, never holding the whole body.

Decompression (gzip is detected by its magic bytes) belongs to `handlers.core.marketdata`, which
takes any iterable of byte chunks, so a local file and an S3 body go through the same code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Final

from botocore.exceptions import ClientError

from handlers.core import runtime
from handlers.core.errors import ObjectNotFoundError

CHUNK_SIZE: Final = 1024 * 1024
# Error codes meaning "this version is gone"; any other ClientError propagates and the state
# machine retries it.
_MISSING: Final = frozenset({"NoSuchKey", "NoSuchVersion"})


def iter_object(
    bucket: str, key: str, version_id: str, *, chunk_size: int = CHUNK_SIZE
) -> Iterator[bytes]:
    """The object version's bytes, `chunk_size` at a time (the request is sent on first use)."""
    try:
        response = runtime.s3().get_object(Bucket=bucket, Key=key, VersionId=version_id)
    except ClientError as exc:
        if _error_code(exc) in _MISSING:
            raise ObjectNotFoundError(
                f"object version not found: s3://{bucket}/{key} (version {version_id})"
            ) from exc
        raise
    body = response["Body"]
    try:
        yield from body.iter_chunks(chunk_size)
    finally:
        body.close()


def read_json(bucket: str, key: str) -> Any:
    """A small JSON object (latest version); ObjectNotFoundError if there is none."""
    try:
        response = runtime.s3().get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if _error_code(exc) in _MISSING:
            raise ObjectNotFoundError(f"object not found: s3://{bucket}/{key}") from exc
        raise
    with response["Body"] as body:
        return json.loads(body.read())


def write_json(bucket: str, key: str, document: Any) -> None:
    body = json.dumps(document, separators=(",", ":"), sort_keys=False).encode()
    runtime.s3().put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
