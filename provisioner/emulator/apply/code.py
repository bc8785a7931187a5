"""The functions' code as the emulator receives it: a deterministic zip of the handlers package."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from provisioner.errors import EngineError
from stacks import spec


def handlers_archive(handlers_dir: Path = spec.HANDLERS_DIR) -> bytes:
    """The functions' code as a zip of `spec.handler_sources`, like `stacks.pipeline`'s.

    Deterministic (sorted entries, fixed timestamps and modes), so an unchanged tree gives the
    same CodeSha256 and a second apply does not redeploy the functions.
    """
    try:
        sources = spec.handler_sources(handlers_dir)
    except ValueError as error:
        raise EngineError(str(error)) from None
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, path in sources:
            info = zipfile.ZipInfo(name)
            info.date_time = (1980, 1, 1, 0, 0, 0)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()
