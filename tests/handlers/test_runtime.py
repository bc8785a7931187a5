"""Packaging and runtime rules of the handlers: imports, configuration, clients, streaming."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from handlers.core import runtime
from handlers.core.errors import BUSINESS_ERRORS, ConfigurationError
from handlers.core.s3stream import iter_object
from handlers.core.status_store import StatusStore
from stacks.spec import ARROW_FUNCTIONS
from tests.handlers.conftest import Uploaded

PACKAGE = Path(__file__).resolve().parents[2] / "handlers"
# What the Lambda zip may rely on: the standard library, the runtime's boto3, the Powertools layer
# and the AWS SDK for pandas layer (pyarrow; stacks.spec.pandas_layer_arn).
ALLOWED_ROOTS = {"boto3", "botocore", "aws_lambda_powertools", "pyarrow", "handlers"}


def runtime_imports(path: Path) -> set[str]:
    """Top-level modules a file imports at run time (imports under TYPE_CHECKING excluded)."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            skipped.update(id(child) for child in ast.walk(node))
    roots = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_handlers_import_only_what_the_lambda_runtime_has(path: Path) -> None:
    foreign = runtime_imports(path) - ALLOWED_ROOTS - set(sys.stdlib_module_names)
    assert not foreign, f"{path.name} imports {foreign}"


def test_business_errors_exist_under_their_names() -> None:
    from handlers.core import errors

    for name in BUSINESS_ERRORS:
        assert issubclass(getattr(errors, name), errors.PipelineError)


def test_business_error_messages_stay_within_1000_characters() -> None:
    from handlers.core.errors import ObjectNotFoundError

    message = str(ObjectNotFoundError("object version not found: s3://b/" + "k" * 1024))
    assert len(message) == 1000
    assert message.startswith("object version not found: s3://b/kkk")


def test_configuration_is_read_at_invocation(
    aws: None, monkeypatch: pytest.MonkeyPatch, status_table: str
) -> None:
    monkeypatch.delenv("STATUS_TABLE_NAME", raising=False)
    with pytest.raises(ConfigurationError, match="STATUS_TABLE_NAME"):
        StatusStore.from_env()
    monkeypatch.setenv("STATUS_TABLE_NAME", status_table)
    assert StatusStore.from_env().table_name == status_table
    monkeypatch.setenv("MAX_BAD_ROW_RATIO", "2")
    with pytest.raises(ConfigurationError, match="MAX_BAD_ROW_RATIO"):
        runtime.env_float("MAX_BAD_ROW_RATIO", 0.01, low=0, high=1)
    monkeypatch.setenv("MAX_BAD_ROW_RATIO", "0.25")
    assert runtime.env_float("MAX_BAD_ROW_RATIO", 0.01, low=0, high=1) == 0.25


def test_clients_are_cached_per_endpoint_and_can_be_reset(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = runtime.s3()
    assert runtime.s3() is first
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4999")
    elsewhere = runtime.s3()
    assert elsewhere is not first
    assert elsewhere.meta.endpoint_url == "http://127.0.0.1:4999"
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert runtime.s3() is first
    runtime.reset_clients()
    assert runtime.s3() is not first


def test_objects_stream_in_chunks(upload: Callable[[str, bytes], Uploaded]) -> None:
    body = bytes(range(256)) * 100
    uploaded = upload("incoming/blob.bin", body)
    chunks = list(iter_object(uploaded.bucket, uploaded.key, uploaded.version_id, chunk_size=1000))
    assert b"".join(chunks) == body
    assert {len(chunk) for chunk in chunks[:-1]} == {1000}
    assert len(chunks) == 26


def test_streaming_starts_only_when_consumed(
    upload: Callable[[str, bytes], Uploaded], monkeypatch: pytest.MonkeyPatch
) -> None:
    uploaded = upload("incoming/blob.bin", b"x")
    calls: list[str] = []
    real = runtime.s3

    def counting() -> object:
        calls.append("s3")
        return real()

    monkeypatch.setattr(runtime, "s3", counting)
    chunks = iter_object(uploaded.bucket, uploaded.key, uploaded.version_id)
    assert calls == []
    assert next(chunks) == b"x"
    assert calls == ["s3"]


@pytest.mark.parametrize(
    ("module", "loads_arrow"),
    [
        ("handlers.validator", True),
        ("handlers.processor", True),
        ("handlers.aggregator", False),
        ("handlers.ingest", False),
        ("handlers.status_api", False),
    ],
)
def test_only_the_arrow_functions_load_pyarrow(module: str, loads_arrow: bool) -> None:
    """Only the validator and processor get the AWS SDK for pandas layer (stacks.spec)."""
    code = f"import sys, {module}; print('pyarrow' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent
    )
    assert done.stdout.strip() == str(loads_arrow)
    assert set(ARROW_FUNCTIONS) == {"validator", "processor"}
