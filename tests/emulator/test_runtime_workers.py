"""The shared runtime workers: deployed code per invocation, isolation, crashes and timeouts."""

from __future__ import annotations

import hashlib
import io
import stat
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provisioner.emulator.deployed_code import ArchiveError, CodeCache
from provisioner.emulator.lambda_dispatch import DeployedFunction, InvocationResult
from provisioner.emulator.runtime_workers import EXIT_ERROR, RuntimeWorkers

ENDPOINT = "http://127.0.0.1:1"

APP = """
import importlib.util
import os
import time

from handlers import version


def handler(event, context):
    action = event.get("action")
    if action == "exit":
        os._exit(3)
    if action == "hang":
        time.sleep(3600)
    if action == "environment":
        return dict(os.environ)
    if action == "context":
        return {
            "function_name": context.function_name,
            "remaining_ms": context.get_remaining_time_in_millis(),
        }
    return {
        "version": version.VALUE,
        "pid": os.getpid(),
        "sees_only_a": importlib.util.find_spec("handlers.only_a") is not None,
    }
"""


def archive(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for name, text in files.items():
            zipped.writestr(name, text)
    return buffer.getvalue()


def code_version(value: str, **extra: str) -> bytes:
    return archive(
        {
            "handlers/__init__.py": "",
            "handlers/version.py": f"VALUE = {value!r}\n",
            "handlers/app.py": APP,
            **extra,
        }
    )


def deployed(
    name: str, code: bytes, environment: dict[str, str] | None = None, timeout_s: int = 30
) -> DeployedFunction:
    return DeployedFunction(
        name=name,
        handler="handlers.app.handler",
        environment=environment or {},
        memory_mb=128,
        timeout_s=timeout_s,
        region="us-east-1",
        account_id="123456789012",
        code_sha256=hashlib.sha256(code).hexdigest(),
        code=code,
    )


def call(workers: RuntimeWorkers, function: DeployedFunction, **event: Any) -> InvocationResult:
    import json

    return workers.invoke(function, json.dumps(event).encode())


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    return tmp_path / "data" / "lambda-code"


@pytest.fixture
def one_worker(code_dir: Path) -> Iterator[RuntimeWorkers]:
    workers = RuntimeWorkers(1, ENDPOINT, CodeCache(code_dir), kill_grace_s=1.0)
    yield workers
    workers.stop()


def test_each_archive_runs_its_own_modules_in_one_shared_worker(
    one_worker: RuntimeWorkers,
) -> None:
    old = deployed("p-acme-dev-validator", code_version("v1", **{"handlers/only_a.py": ""}))
    new = deployed("p-globex-dev-validator", code_version("v2"))
    seen = [call(one_worker, function).value() for function in (old, new, old, new, old)]
    assert [value["version"] for value in seen] == ["v1", "v2", "v1", "v2", "v1"]
    # handlers.only_a exists only in the first archive: the second never sees it, even after
    # the first imported its modules in the same process.
    assert [value["sees_only_a"] for value in seen] == [True, False, True, False, True]
    assert len({value["pid"] for value in seen}) == 1


def test_an_invocation_sees_exactly_its_functions_environment(one_worker: RuntimeWorkers) -> None:
    code = code_version("v1")
    acme = deployed("p-acme-dev-status", code, {"PIPELINE_TENANT": "acme", "ONLY_ACME": "1"})
    globex = deployed("p-globex-dev-status", code, {"PIPELINE_TENANT": "globex"})
    first, second, third = (
        call(one_worker, function, action="environment").value()
        for function in (acme, globex, acme)
    )
    assert first["PIPELINE_TENANT"] == third["PIPELINE_TENANT"] == "acme"
    assert first["ONLY_ACME"] == third["ONLY_ACME"] == "1"
    assert second["PIPELINE_TENANT"] == "globex"
    assert "ONLY_ACME" not in second
    assert second["AWS_LAMBDA_FUNCTION_NAME"] == "p-globex-dev-status"
    assert first["AWS_LAMBDA_FUNCTION_NAME"] == "p-acme-dev-status"
    # The worker's own SDK settings reach every function: the emulator, local credentials.
    assert second["AWS_ENDPOINT_URL"] == ENDPOINT
    assert second["AWS_ACCESS_KEY_ID"] == "local"


def test_an_invocation_gets_a_lambda_context_with_its_timeout(one_worker: RuntimeWorkers) -> None:
    function = deployed("p-acme-dev-ingest", code_version("v1"), timeout_s=7)
    context = call(one_worker, function, action="context").value()
    assert context["function_name"] == "p-acme-dev-ingest"
    assert 0 < context["remaining_ms"] <= 7000


def test_a_crashed_worker_is_reported_as_lambda_does_and_replaced(
    one_worker: RuntimeWorkers,
) -> None:
    function = deployed("p-acme-dev-processor", code_version("v1"))
    before = call(one_worker, function).value()["pid"]
    crashed = call(one_worker, function, action="exit")
    assert crashed.error_type == EXIT_ERROR
    assert crashed.value()["errorMessage"] == "Runtime exited with error: exit status 3"
    after = call(one_worker, function).value()["pid"]
    assert after != before
    assert one_worker.pids() == [after]
    assert one_worker.replaced == 1


def test_a_handler_past_its_timeout_is_killed(one_worker: RuntimeWorkers) -> None:
    function = deployed("p-acme-dev-aggregator", code_version("v1"), timeout_s=1)
    started = time.monotonic()
    result = call(one_worker, function, action="hang")
    assert result.error_type == "Sandbox.Timedout"
    assert time.monotonic() - started < 30
    assert call(one_worker, function).ok  # a fresh worker took over


def test_workers_are_bounded_whatever_the_number_of_environments(code_dir: Path) -> None:
    workers = RuntimeWorkers(2, ENDPOINT, CodeCache(code_dir))
    try:
        code = code_version("v1")
        functions = [deployed(f"p-t{index}-dev-status", code) for index in range(6)]
        results: list[InvocationResult] = []
        threads = [
            threading.Thread(target=lambda f=f: results.append(call(workers, f)))
            for f in functions * 2
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert len(results) == 12
        assert all(result.ok for result in results)
        assert len({result.value()["pid"] for result in results}) <= 2
        assert len(workers.pids()) <= 2
    finally:
        workers.stop()
    assert workers.pids() == []


def test_archives_are_unpacked_once_by_digest_and_privately(code_dir: Path) -> None:
    cache = CodeCache(code_dir)
    code = code_version("v1")
    digest = hashlib.sha256(code).hexdigest()
    root = cache.unpacked(digest, code)
    assert root == code_dir / digest
    assert (root / "handlers" / "version.py").read_text() == "VALUE = 'v1'\n"
    inode = (root / "handlers" / "version.py").stat().st_ino
    assert CodeCache(code_dir).unpacked(digest, code) == root  # another cache: same files
    assert (root / "handlers" / "version.py").stat().st_ino == inode
    for path in [code_dir, *code_dir.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    assert list((root / "handlers" / "__pycache__").glob("*.pyc"))  # compiled ahead


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (archive({"../escape.py": "x = 1\n"}), "unsafe path"),
        (archive({"/abs.py": "x = 1\n"}), "unsafe path"),
        (b"not a zip", "not a zip file"),
    ],
)
def test_an_unsafe_or_corrupt_archive_is_refused(code_dir: Path, code: bytes, message: str) -> None:
    with pytest.raises(ArchiveError, match=message):
        CodeCache(code_dir).unpacked(hashlib.sha256(code).hexdigest(), code)
    assert not (code_dir.parent / "escape.py").exists()
    assert [path.name for path in code_dir.iterdir()] == []  # no half-unpacked leftovers


def test_an_archive_that_does_not_match_its_digest_is_refused(
    one_worker: RuntimeWorkers,
) -> None:
    function = deployed("p-acme-dev-status", code_version("v1"))
    tampered = DeployedFunction(**{**function.__dict__, "code": code_version("v2")})
    result = one_worker.invoke(tampered, b"{}")
    assert result.error_type == "Runtime.ImportModuleError"
    assert "SHA-256" in (result.error_message or "")


def test_an_invocation_after_stop_fails_as_unavailable(code_dir: Path) -> None:
    workers = RuntimeWorkers(1, ENDPOINT, CodeCache(code_dir))
    workers.stop()
    result = call(workers, deployed("p-acme-dev-status", code_version("v1")))
    assert result.error_type == "LocalRuntimeUnavailable"
    assert workers.pids() == []
