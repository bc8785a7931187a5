"""The data directory: private to the service's user (docs/architecture.md §9).

It holds the registry, Pulumi state, the generated admin key and the records of child
processes, so the directory is 0700 and every file in it 0600, whoever created them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from sqlalchemy.engine import make_url

from provisioner.config import Settings

DIRECTORY_MODE: Final = 0o700
FILE_MODE: Final = 0o600


def private_directory(path: Path) -> None:
    """Create `path` (and its parents) if need be, and make it 0700 whoever created it."""
    path.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    os.chmod(path, DIRECTORY_MODE)


def write_atomically(path: Path, payload: bytes, *, sync_directory: bool = True) -> None:
    """Replace `path` with `payload` (0600) so that a crash leaves the old file or the new one,
    never a part: a temporary file, fsynced, renamed over it; then the directory fsynced, so the
    rename itself is on disk (`sync_directory=False` for a caller that writes several files and
    syncs their directory once, with `fsync_directory`)."""
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if sync_directory:
        fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def private_data_dir(settings: Settings) -> Path:
    """Create (or tighten) the data dir and the files in it; returns the directory.

    The SQLite file is created here, 0600, before SQLite opens it: SQLite gives its -wal and
    -shm files the main file's mode, so they are private from the start too.
    """
    data_dir: Path = settings.data_dir
    data_dir.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    os.chmod(data_dir, DIRECTORY_MODE)
    database = _sqlite_file(settings.resolved_database_url)
    if database is not None and database.parent.resolve() == data_dir.resolve():
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT, FILE_MODE))
    for path in data_dir.iterdir():
        if path.is_file() and not path.is_symlink():
            os.chmod(path, FILE_MODE)
        elif path.is_dir() and not path.is_symlink():
            os.chmod(path, DIRECTORY_MODE)
    return data_dir


def _sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)
