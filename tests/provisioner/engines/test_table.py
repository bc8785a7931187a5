"""The one table from an engine's name to its implementation, and who may drive Pulumi."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from provisioner.config import Settings
from provisioner.engines import ENGINES, build_host, engine_reference, load_engine
from provisioner.engines.base import StatusApiRequest
from provisioner.engines.worker_host import WorkerOnlyHost
from provisioner.errors import NotFoundError
from stacks.config import PipelineConfig

ROOT = Path(__file__).resolve().parents[3]


def test_every_engine_name_loads_its_engine_class() -> None:
    for name in ENGINES:
        assert load_engine(engine_reference(name)).name == name


def test_the_local_engine_has_a_host_and_the_pulumi_engine_a_worker_only_one(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path)
    assert type(build_host(engine_reference("local"), settings)).__name__ == "LocalHost"
    assert isinstance(build_host(engine_reference("pulumi"), settings), WorkerOnlyHost)
    # An engine outside the table (the tests' scripted one) keeps nothing in the service.
    scripted = "tests.provisioner.scripted_engine:ScriptedEngine"
    assert isinstance(build_host(scripted, settings), WorkerOnlyHost)


def test_a_worker_only_host_serves_no_status_api(tmp_path: Path) -> None:
    host = build_host(engine_reference("pulumi"), Settings(data_dir=tmp_path))
    config = PipelineConfig(tenant="acme", environment="dev")
    request = StatusApiRequest(path="/files", query={}, headers={}, source_ip="127.0.0.1")
    with pytest.raises(NotFoundError, match="only with the local engine"):
        host.serve_status_api(config, request)


def _imports_automation(path: Path) -> bool:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            if any(alias.name.startswith("pulumi.automation") for alias in node.names):
                return True
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("pulumi.automation") or (
                node.module == "pulumi" and any(a.name == "automation" for a in node.names)
            ):
                return True
    return False


def test_only_the_pulumi_engine_imports_the_automation_api() -> None:
    # import-linter cannot name a subpackage of an external package; this covers `stacks`
    # (which imports `pulumi` itself) and every other package of ours.
    importers = sorted(
        str(path.relative_to(ROOT))
        for package in ("provisioner", "stacks", "handlers")
        for path in (ROOT / package).rglob("*.py")
        if _imports_automation(path)
    )
    assert importers
    assert all(path.startswith("provisioner/engines/pulumi/") for path in importers), importers
