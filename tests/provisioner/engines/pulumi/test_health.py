"""`PulumiEngine.health()`: is the CLI on PATH, and which version is it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import provisioner.engines.pulumi.engine as pulumi_engine
from provisioner.config import Settings
from provisioner.engines.base import EngineHealth
from provisioner.engines.pulumi.engine import PulumiEngine


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An otherwise empty PATH (plus the system's, for /bin/sh's own needs)."""
    directory = tmp_path / "bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}/usr/bin{os.pathsep}/bin")
    return directory


def install_cli(bin_dir: Path, body: str) -> None:
    script = bin_dir / "pulumi"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def health(settings: Settings) -> EngineHealth:
    return PulumiEngine.build(settings).health()


def test_cli_on_path_reports_its_version(
    bin_dir: Path, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_dump = tmp_path / "env"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "ambient-secret")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "ambient-passphrase")
    install_cli(bin_dir, f'env > {env_dump}\n[ "$1" = version ] && echo v3.272.0')

    assert health(settings) == EngineHealth(True, "pulumi v3.272.0")
    # The probe needs no secrets, so it gets none.
    probe_env = env_dump.read_text()
    assert "ambient-secret" not in probe_env
    assert "ambient-passphrase" not in probe_env
    assert "PULUMI_SKIP_UPDATE_CHECK=true" in probe_env


def test_no_cli_on_path(bin_dir: Path, settings: Settings) -> None:
    assert health(settings) == EngineHealth(False, "Pulumi CLI not found on PATH")


def test_cli_that_fails(bin_dir: Path, settings: Settings) -> None:
    install_cli(bin_dir, "echo 'error: broken install' >&2\nexit 1")

    assert health(settings) == EngineHealth(False, "`pulumi version` failed (exit code 1)")


def test_cli_too_old_for_inline_refresh_and_destroy(bin_dir: Path, settings: Settings) -> None:
    install_cli(bin_dir, "echo v3.180.2")

    assert health(settings) == EngineHealth(
        False, "pulumi v3.180.2 is too old: 3.181 or newer is needed"
    )


def test_cli_that_hangs(bin_dir: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pulumi_engine, "VERSION_TIMEOUT_S", 0.3)
    install_cli(bin_dir, "exec sleep 10")

    assert health(settings) == EngineHealth(False, "`pulumi version` did not answer within 0.3 s")
