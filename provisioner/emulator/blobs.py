"""A snapshot's large payloads (S3 object bodies, Lambda code archives, the pickled histories
of finished Step Functions executions), kept beside it as content-addressed files, so that each
snapshot pickles a reference instead of the same bytes again.

A payload of at least `MIN_BLOB_BYTES` is stored once as `blobs/<sha256>` (0600, fsynced, put
in place by rename, so a file under its name is whole) and referenced from the pickle by its
digest. The snapshot's capture only computes digests (cached per object: moto's payloads never
change in place) and keeps the new payloads in memory; they are written after the requests
are let through again (`write_pending`), before the snapshot that references them, and files
no snapshot references any more are removed once a newer one is on disk (`collect`). A restore
reads each referenced payload and checks it against its name: a missing or corrupt one makes
the whole snapshot unusable (`BlobError`, a `SnapshotError` to the restore), never a
half-restored emulator.
"""

from __future__ import annotations

import hashlib
import re
import weakref
from pathlib import Path
from typing import Any, Final

from provisioner.datadir import fsync_directory, private_directory, write_atomically

BLOB_DIR: Final = "blobs"
# Smaller payloads stay inside the pickle: a file of their own would cost more than it saves.
MIN_BLOB_BYTES: Final = 4096

_DIGEST: Final = re.compile(r"^[0-9a-f]{64}$")


class BlobError(Exception):
    """A payload a snapshot references is missing, unreadable or not what its name says."""


class BlobStore:
    """The payload files under `directory` (see the module docstring). Not thread-safe: one
    snapshot at a time uses it (the persistence's save lock)."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._on_disk: set[str] = set()
        self._scanned = False
        # Digests of payloads seen by earlier captures, by object: a payload is hashed once.
        self._by_object: dict[int, tuple[Any, str]] = {}
        self._by_owner: dict[int, tuple[weakref.ref[Any], str]] = {}
        self._pending: dict[str, bytes] = {}
        self._referenced: set[str] = set()
        self._seen: set[int] = set()

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def referenced(self) -> frozenset[str]:
        """The digests the last capture referenced."""
        return frozenset(self._referenced)

    def begin(self) -> None:
        """Start a capture: nothing referenced or pending yet."""
        self._scan()
        self._pending = {}
        self._referenced = set()
        self._seen = set()

    def reference(self, payload: bytes | str) -> str:
        """The digest of a payload that lives on in moto's state (its identity is cached); a
        text is stored as UTF-8."""
        self._seen.add(id(payload))
        cached = self._by_object.get(id(payload))
        if cached is not None and cached[0] is payload:
            digest = str(cached[1])
            if digest in self._on_disk or digest in self._pending:
                self._referenced.add(digest)
                return digest
        encoded = payload.encode() if isinstance(payload, str) else payload
        digest = hashlib.sha256(encoded).hexdigest()
        # The entry holds the payload itself, so its id cannot be reused by another object.
        self._by_object[id(payload)] = (payload, digest)
        return self._use(digest, encoded)

    def owned_digest(self, owner: Any) -> str | None:
        """The digest recorded for `owner`'s payload by an earlier capture (`reference_owned`)."""
        cached = self._by_owner.get(id(owner))
        if cached is None or cached[0]() is not owner:
            return None
        self._seen.add(id(owner))
        digest = cached[1]
        if digest in self._on_disk or digest in self._pending:
            self._referenced.add(digest)
            return digest
        return None  # its file went missing: the caller hands the payload over again

    def reference_owned(self, owner: Any, payload: bytes) -> str:
        """The digest of a payload made from `owner` (a fresh copy each time, as S3 objects give
        out their bodies, or a finished execution's pickled history): cached by the owner,
        which must never change it. Only the digest is kept, not the payload."""
        digest = hashlib.sha256(payload).hexdigest()
        self._by_owner[id(owner)] = (weakref.ref(owner), digest)
        self._seen.add(id(owner))
        return self._use(digest, payload)

    def end(self) -> None:
        """Finish a capture: forget the objects it did not meet (gone from moto's state)."""
        self._by_object = {k: v for k, v in self._by_object.items() if k in self._seen}
        self._by_owner = {k: v for k, v in self._by_owner.items() if k in self._seen}

    def write_pending(self) -> int:
        """Write the payloads the last capture met for the first time; returns their bytes."""
        private_directory(self._directory)
        written = 0
        for digest, payload in self._pending.items():
            write_atomically(self._directory / digest, payload, sync_directory=False)
            self._on_disk.add(digest)
            written += len(payload)
        if self._pending:
            fsync_directory(self._directory)
        self._pending = {}
        return written

    def collect(self) -> int:
        """Remove the files the last capture did not reference (once its snapshot is on disk);
        returns how many were removed."""
        unused = self._on_disk - self._referenced
        for digest in unused:
            (self._directory / digest).unlink(missing_ok=True)
        self._on_disk -= unused
        return len(unused)

    def read(self, digest: str) -> bytes:
        """A payload, checked against its digest."""
        if not _DIGEST.match(digest):
            raise BlobError("the snapshot references a payload by an invalid name")
        try:
            payload = (self._directory / digest).read_bytes()
        except FileNotFoundError:
            raise BlobError(f"the payload {digest[:12]} of the snapshot is missing") from None
        except OSError as error:
            message = f"the payload {digest[:12]} cannot be read ({error.strerror})"
            raise BlobError(message) from None
        if hashlib.sha256(payload).hexdigest() != digest:
            raise BlobError(f"the payload {digest[:12]} does not match its checksum")
        return payload

    def _use(self, digest: str, payload: bytes) -> str:
        self._referenced.add(digest)
        if digest not in self._on_disk:
            self._pending[digest] = payload
        return digest

    def _scan(self) -> None:
        if self._scanned:
            return
        if self._directory.is_dir():
            for path in self._directory.iterdir():
                if _DIGEST.match(path.name):
                    self._on_disk.add(path.name)
                else:  # a write that a crash interrupted
                    path.unlink(missing_ok=True)
        self._scanned = True
