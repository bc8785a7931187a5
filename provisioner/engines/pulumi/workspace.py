"""The CLI's surroundings: the scrubbed process environment, the state directory, the work dir."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlparse

import structlog

from provisioner.errors import (
    EngineUnavailableError,
)

logger = structlog.get_logger(__name__)

SCRUBBED_PREFIXES: Final = ("AWS_", "PULUMI_CONFIG_PASSPHRASE")


@contextlib.contextmanager
def scrubbed_environ() -> Iterator[None]:
    """Hide the worker's ambient AWS_* and PULUMI_CONFIG_PASSPHRASE* variables from the CLI.

    The SDK starts the CLI with `{**os.environ, **env_vars}`, so whatever the worker inherited
    reaches the CLI and its AWS provider unless `env_vars` overrides it: an ambient
    AWS_SESSION_TOKEN next to static keys, an AWS_PROFILE, a stray passphrase. The worker is a
    process dedicated to one operation, which is why this module, and only this one, may edit
    os.environ; the values come back afterwards, leaving the process as it was found.
    """
    removed = {
        name: os.environ.pop(name)
        for name in list(os.environ)
        if name.startswith(SCRUBBED_PREFIXES)
    }
    try:
        yield
    finally:
        os.environ.update(removed)


def probe_env() -> dict[str, str]:
    env = {
        name: value for name, value in os.environ.items() if not name.startswith(SCRUBBED_PREFIXES)
    }
    env["PULUMI_SKIP_UPDATE_CHECK"] = "true"
    return env


def ensure_file_backend(url: str) -> None:
    """The file backend's directory must exist before `pulumi` can log in to it."""
    parsed = urlparse(url)
    if parsed.scheme != "file":
        return
    # file:///abs/path, file://~/path and file://relative/path all name a directory.
    path = Path(unquote(parsed.netloc + parsed.path)).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EngineUnavailableError(
            f"cannot create the Pulumi state directory {path}: {exc.strerror}"
        ) from None


def remove_work_dir(work_dir: Path, log: Any) -> None:
    try:
        shutil.rmtree(work_dir)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("pulumi.work_dir.not_removed", work_dir=str(work_dir), error=exc.strerror)
