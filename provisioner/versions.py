"""The service's code version (docs/architecture.md §7): a 12-hex digest of what decides an
environment's resources and code, the `stacks/` and `handlers/` sources and the installed
`pulumi` / `pulumi-aws` versions. Computed once per process."""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Final

_ROOT: Final = Path(__file__).resolve().parent.parent
_SOURCES: Final = ("stacks", "handlers")
_SDKS: Final = ("pulumi", "pulumi-aws")
# Byte-code and tool caches differ between machines and runs without changing what deploys.
_IGNORED_PARTS: Final = frozenset({"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"})
_IGNORED_SUFFIXES: Final = frozenset({".pyc", ".pyo"})


def _sdk_version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "absent"


def compute_code_version(root: Path = _ROOT) -> str:
    """Paths (relative, POSIX) and contents of every source file, sorted, then the SDK versions."""
    digest = hashlib.sha256()
    files = sorted(
        path
        for source in _SOURCES
        for path in (root / source).rglob("*")
        if path.is_file()
        and not _IGNORED_PARTS.intersection(path.relative_to(root).parts)
        and path.suffix not in _IGNORED_SUFFIXES
    )
    for path in files:
        relative = path.relative_to(root).as_posix().encode()
        content = path.read_bytes()
        # Lengths delimit each part, so no two different trees hash the same byte stream.
        digest.update(b"%d:%s%d:" % (len(relative), relative, len(content)))
        digest.update(content)
    for distribution in _SDKS:
        digest.update(f"{distribution}=={_sdk_version(distribution)}\n".encode())
    return digest.hexdigest()[:12]


@cache
def service_code_version() -> str:
    return compute_code_version()
