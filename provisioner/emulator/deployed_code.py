"""Functions' deployed code archives: unpacked once by digest, imported in isolation.

On AWS each function runs the zip it was given; an environment updated to new code runs the
new code and one not yet updated keeps the old. Locally the same holds because every
invocation runs the archive moto holds for the function (`DeployedFunction.code`), never the
service's own `handlers/`:

- `CodeCache` (in the service) unpacks an archive once, into `<data dir>/lambda-code/<sha256>`
  (0700 directories, 0600 files, like the rest of the data dir), compiled ahead so that the
  runtime workers never write into it.
- `ArchiveModules` (in a runtime worker) lets one process run several archives whose modules
  share names (every version contains `handlers.…`): during an invocation `sys.modules` holds
  that archive's modules only, each archive's are kept apart between invocations, and what
  the archive does not ship (boto3, Powertools, pyarrow: the layers) is shared.
"""

from __future__ import annotations

import compileall
import hashlib
import io
import os
import shutil
import sys
import tempfile
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Final

from provisioner.datadir import DIRECTORY_MODE, FILE_MODE, private_directory

CODE_DIR: Final = "lambda-code"
# Lambda's limit for a function's unzipped code (a zip bomb stops here, not on the disk).
MAX_UNZIPPED_BYTES: Final = 250 * 1024 * 1024
# Archives whose modules one worker keeps imported (one per code version in use, typically).
KEPT_ARCHIVES: Final = 8


class ArchiveError(Exception):
    """The archive cannot be run: corrupt, unsafe, too large, or not what its digest says."""


class CodeCache:
    """Unpacked archives by SHA-256 under `root` (thread-safe; safe with other processes)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._known: dict[str, Path] = {}

    def unpacked(self, code_sha256: str, code: bytes) -> Path:
        """The directory holding the archive's files, unpacking it the first time."""
        known = self._known.get(code_sha256)
        if known is not None:
            return known
        with self._lock:
            target = self.root / code_sha256
            if not target.is_dir():
                self._unpack(code_sha256, code, target)
            self._known[code_sha256] = target
            return target

    def _unpack(self, code_sha256: str, code: bytes, target: Path) -> None:
        if hashlib.sha256(code).hexdigest() != code_sha256:
            raise ArchiveError("the code archive does not match its SHA-256")
        private_directory(self.root)
        staging = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=self.root))  # 0700
        try:
            _extract(code, staging)
            # Compiled now, so workers (which never write bytecode) need not compile each time.
            compileall.compile_dir(staging, quiet=2, workers=1)
            _make_private(staging)
            try:
                staging.rename(target)  # atomic: a reader sees all of it or nothing
            except OSError:
                if not target.is_dir():  # not merely another process's identical copy
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _extract(code: bytes, destination: Path) -> None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(code))
    except zipfile.BadZipFile as error:
        raise ArchiveError(f"the code archive is not a zip file: {error}") from None
    with archive:
        members = archive.infolist()
        if sum(member.file_size for member in members) > MAX_UNZIPPED_BYTES:
            raise ArchiveError(f"the unzipped code exceeds {MAX_UNZIPPED_BYTES} bytes")
        for member in members:
            path = PurePosixPath(member.filename)
            if path.is_absolute() or ".." in path.parts or "\\" in member.filename:
                raise ArchiveError(f"unsafe path in the code archive: {member.filename!r}")
        try:
            archive.extractall(destination)
        except (zipfile.BadZipFile, OSError, ValueError) as error:
            raise ArchiveError(f"the code archive cannot be unpacked: {error}") from None


def _make_private(directory: Path) -> None:
    os.chmod(directory, DIRECTORY_MODE)
    for parent, directories, files in os.walk(directory):
        for name in directories:
            os.chmod(os.path.join(parent, name), DIRECTORY_MODE)
        for name in files:
            os.chmod(os.path.join(parent, name), FILE_MODE)


def _top(module_name: str) -> str:
    return module_name.partition(".")[0]


class ArchiveModules:
    """Which archive's modules this process sees; one invocation at a time (a worker's)."""

    def __init__(self, kept: int = KEPT_ARCHIVES) -> None:
        self._kept = kept
        self._modules: OrderedDict[str, dict[str, ModuleType]] = OrderedDict()
        self._tops: dict[str, frozenset[str]] = {}

    def _top_names(self, root: str) -> frozenset[str]:
        """The importable names the archive ships at its root (`handlers`, `app`, …)."""
        tops = self._tops.get(root)
        if tops is None:
            tops = frozenset(
                entry.name.removesuffix(".py")
                for entry in os.scandir(root)
                if not entry.name.startswith((".", "__pycache__"))
                and (entry.is_dir() or entry.name.endswith(".py"))
            )
            self._tops[root] = tops
        return tops

    @contextmanager
    def using(self, root: str) -> Iterator[None]:
        """Import from the archive unpacked at `root`, and nothing else under its names."""
        tops = self._top_names(root)
        # Whatever this process holds under those names (the service's own `handlers`, say)
        # is hidden for the invocation and put back afterwards.
        hidden = {name: module for name, module in sys.modules.items() if _top(name) in tops}
        for name in hidden:
            del sys.modules[name]
        sys.modules.update(self._modules.pop(root, {}))
        sys.path.insert(0, root)
        try:
            yield
        finally:
            sys.path.remove(root)
            ours = {name: module for name, module in sys.modules.items() if _top(name) in tops}
            for name in ours:
                del sys.modules[name]
            sys.modules.update(hidden)
            self._modules[root] = ours
            while len(self._modules) > self._kept:
                self._modules.popitem(last=False)


# One per process: sys.modules is.
ARCHIVE_MODULES: Final = ArchiveModules()


def never_write_bytecode() -> None:
    """In a runtime worker: the cache is read-only to it (`CodeCache` compiled it already)."""
    sys.dont_write_bytecode = True
