"""The Dockerfile (which cannot be built here) keeps the invariants the pulumi engine relies on.

Above all, its pinned Pulumi CLI and AWS plugin versions follow the installed Python SDKs, so a
dependency bump cannot silently leave the image on versions the SDKs do not expect.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def parse(text: str) -> list[Instruction]:
    """Dockerfile instructions, with continuation lines joined and comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return instructions


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last_from = max(
        i for i, instruction in enumerate(instructions) if instruction.keyword == "FROM"
    )
    return instructions[last_from:]


def global_args(instructions: list[Instruction]) -> dict[str, str]:
    """`ARG NAME=default` lines before the first FROM."""
    args: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "FROM":
            break
        if instruction.keyword == "ARG":
            name, _, default = instruction.args.partition("=")
            args[name] = default
    return args


def env(stage: list[Instruction]) -> dict[str, str]:
    values: dict[str, str] = {}
    for instruction in stage:
        if instruction.keyword == "ENV":
            for pair in shlex.split(instruction.args):
                name, _, value = pair.partition("=")
                values[name] = value
    return values


def test_pulumi_cli_version_is_the_installed_sdk_version(instructions: list[Instruction]) -> None:
    assert global_args(instructions)["PULUMI_VERSION"] == importlib.metadata.version("pulumi")


def test_aws_plugin_version_is_the_one_the_installed_pulumi_aws_needs(
    instructions: list[Instruction],
) -> None:
    plugin = json.loads(
        importlib.resources.files("pulumi_aws").joinpath("pulumi-plugin.json").read_text()
    )
    assert plugin["name"] == "aws"
    assert plugin["version"] == importlib.metadata.version("pulumi_aws")
    assert global_args(instructions)["PULUMI_AWS_VERSION"] == plugin["version"]
    runs = [instruction.args for instruction in instructions if instruction.keyword == "RUN"]
    assert any("plugin install resource aws v${PULUMI_AWS_VERSION}" in run for run in runs)


def test_cli_comes_from_the_official_tarball_with_its_checksum_verified(
    instructions: list[Instruction],
) -> None:
    download = next(
        instruction.args
        for instruction in instructions
        if instruction.keyword == "RUN" and "get.pulumi.com" in instruction.args
    )
    assert 'archive="pulumi-v${PULUMI_VERSION}-linux-${arch}.tar.gz"' in download
    assert 'checksums="pulumi-${PULUMI_VERSION}-checksums.txt"' in download
    assert "https://get.pulumi.com/releases/sdk/${archive}" in download
    assert "https://get.pulumi.com/releases/sdk/${checksums}" in download
    assert "sha256sum -c" in download
    # Verified before it is unpacked.
    assert download.index("sha256sum -c") < download.index("tar -xzf")


def test_base_images_are_pinned_by_tag(instructions: list[Instruction]) -> None:
    image = global_args(instructions)["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.\d+[\w.-]*-slim[\w.-]*", image), image
    froms = [instruction.args for instruction in instructions if instruction.keyword == "FROM"]
    assert len(froms) >= 2  # multi-stage: build tools stay out of the runtime image
    assert all(args.startswith("${PYTHON_IMAGE} AS ") for args in froms), froms


def test_runs_as_a_non_root_user(final_stage: list[Instruction]) -> None:
    users = [instruction.args for instruction in final_stage if instruction.keyword == "USER"]
    assert users, "the runtime stage sets no USER"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_runtime_environment_selects_the_pulumi_engine(final_stage: list[Instruction]) -> None:
    values = env(final_stage)
    assert values["PROVISIONER_ENGINE"] == "pulumi"
    assert values["PROVISIONER_HOST"] == "0.0.0.0"
    assert values["PULUMI_HOME"].startswith("/home/provisioner/")
    assert values["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] == "true"
    assert "/opt/pulumi" in values["PATH"].split(":")
    volumes = [instruction.args for instruction in final_stage if instruction.keyword == "VOLUME"]
    assert json.loads(volumes[-1]) == [values["PROVISIONER_DATA_DIR"]]


def test_plugin_home_is_handed_to_the_runtime_user(final_stage: list[Instruction]) -> None:
    copies = [instruction.args for instruction in final_stage if instruction.keyword == "COPY"]
    pulumi_home = env(final_stage)["PULUMI_HOME"]
    assert any(
        "--chown=provisioner:provisioner" in copy and copy.endswith(f" {pulumi_home}")
        for copy in copies
    )


def test_serves_the_api_with_a_health_check(final_stage: list[Instruction]) -> None:
    by_keyword = {instruction.keyword: instruction.args for instruction in final_stage}
    assert json.loads(by_keyword["CMD"]) == ["python", "-m", "provisioner"]
    assert by_keyword["EXPOSE"] == "8000"
    healthcheck = by_keyword["HEALTHCHECK"]
    command = json.loads(healthcheck[healthcheck.index("CMD") + len("CMD") :])
    assert command[:2] == ["python", "-c"]
    assert "/healthz" in command[2]
    compile(command[2], "<healthcheck>", "exec")  # the one-liner is valid Python


def test_project_is_installed_without_the_dev_extra(instructions: list[Instruction]) -> None:
    installs = [
        instruction.args
        for instruction in instructions
        if instruction.keyword == "RUN" and "pip install" in instruction.args
    ]
    assert installs == ["/opt/venv/bin/pip install ."]


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for pattern in (".git", "**/.venv", "node_modules", "**/__pycache__", ".provisioner"):
        assert pattern in patterns, pattern
