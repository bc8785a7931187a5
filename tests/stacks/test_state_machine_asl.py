"""The ASL definition: valid Amazon States Language, and the pipeline's rules hold in its graph."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from handlers.core.errors import BUSINESS_ERRORS
from handlers.core.status_model import STATUS_RANK, STATUS_RANK_ATTRIBUTE, FileStatus
from stacks import spec
from stacks.config import PipelineConfig
from tests.stacks.documents import parsed
from tests.stacks.mocks import STATE_MACHINE, Deployment

REPO = Path(__file__).resolve().parents[2]
ASL_VALIDATOR = REPO / "node_modules" / ".bin" / "asl-validator"

LAMBDA_SERVICE_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}
CONDITIONAL_CHECK_SPELLINGS = {
    "DynamoDB.ConditionalCheckFailedException",
    "DynamoDb.ConditionalCheckFailedException",
}
STAGE_TASKS = {"Validate": "validator", "Process": "processor", "Aggregate": "aggregator"}
TERMINAL_TYPES = {"Succeed", "Fail"}
UPDATE_ITEM = "arn:aws:states:::dynamodb:updateItem"


@pytest.fixture(scope="module")
def definition(deployment: Deployment) -> dict[str, Any]:
    """The definition exactly as the stack deploys it (ARNs resolved)."""
    return parsed(deployment.one(STATE_MACHINE), "definition")


def _validate(document: dict[str, Any], directory: Path) -> subprocess.CompletedProcess[str]:
    if not ASL_VALIDATOR.exists():
        pytest.fail(
            f"{ASL_VALIDATOR} is missing: run `npm ci` in {REPO} (or `make install`) to install "
            "the Amazon States Language validator pinned in package.json"
        )
    path = directory / "definition.asl.json"
    path.write_text(json.dumps(document))
    return subprocess.run(
        [str(ASL_VALIDATOR), "--json-path", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_definition_is_valid_amazon_states_language(
    definition: dict[str, Any], tmp_path: Path
) -> None:
    result = _validate(definition, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_custom_definition_is_valid_amazon_states_language(
    custom_deployment: Deployment, tmp_path: Path
) -> None:
    result = _validate(parsed(custom_deployment.one(STATE_MACHINE), "definition"), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_validator_rejects_a_broken_definition(definition: dict[str, Any], tmp_path: Path) -> None:
    """The validator really checks: a dangling transition fails it."""
    broken = json.loads(json.dumps(definition))
    broken["States"]["Validate"]["Next"] = "NoSuchState"
    result = _validate(broken, tmp_path)
    assert result.returncode != 0
    assert "NoSuchState" in result.stdout + result.stderr


# --- graph ---------------------------------------------------------------------------------------


def _transitions(state: dict[str, Any]) -> list[str]:
    targets = [state["Next"]] if "Next" in state else []
    targets += [catch["Next"] for catch in state.get("Catch", [])]
    targets += [choice["Next"] for choice in state.get("Choices", [])]
    if "Default" in state:
        targets.append(state["Default"])
    return targets


def test_every_transition_target_exists(definition: dict[str, Any]) -> None:
    states = definition["States"]
    assert definition["StartAt"] in states
    for name, state in states.items():
        for target in _transitions(state):
            assert target in states, f"{name} → {target}"


def test_every_state_is_reachable_from_the_start(definition: dict[str, Any]) -> None:
    states = definition["States"]
    seen = {definition["StartAt"]}
    frontier = [definition["StartAt"]]
    while frontier:
        for target in _transitions(states[frontier.pop()]):
            if target not in seen:
                seen.add(target)
                frontier.append(target)
    assert seen == set(states)


def test_every_path_ends_in_succeed_or_fail(definition: dict[str, Any]) -> None:
    """No dead end (every non-terminal state moves on, none just ends) and no cycle."""
    states = definition["States"]
    for name, state in states.items():
        if state["Type"] in TERMINAL_TYPES:
            assert not _transitions(state), name
        else:
            assert "End" not in state, f"{name} ends without Succeed or Fail"
            assert "Next" in state or "Default" in state, name

    visiting: set[str] = set()
    done: set[str] = set()

    def walk(name: str) -> None:
        assert name not in visiting, f"cycle through {name}"
        if name in done:
            return
        visiting.add(name)
        for target in _transitions(states[name]):
            walk(target)
        visiting.discard(name)
        done.add(name)

    walk(definition["StartAt"])
    assert {"Completed", "Failed", "Superseded"} <= done


# --- stage tasks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("task", sorted(STAGE_TASKS))
def test_stage_task_retries_lambda_service_errors_with_backoff(
    definition: dict[str, Any], task: str
) -> None:
    state = definition["States"][task]
    assert state["Resource"] == "arn:aws:states:::lambda:invoke"
    retried = {error for retry in state["Retry"] for error in retry["ErrorEquals"]}
    assert retried >= LAMBDA_SERVICE_ERRORS
    for retry in state["Retry"]:
        assert retry["BackoffRate"] > 1
        assert retry["MaxAttempts"] >= 2
        assert retry["JitterStrategy"] == "FULL"
    # A business error is the file's fault: retrying cannot help.
    assert retried.isdisjoint(BUSINESS_ERRORS)


@pytest.mark.parametrize("task", sorted(STAGE_TASKS))
def test_stage_task_catches_everything_and_records_the_failure(
    definition: dict[str, Any], task: str
) -> None:
    states = definition["States"]
    catches = states[task]["Catch"]
    assert catches[-1]["ErrorEquals"] == ["States.ALL"]
    caught = {error for catch in catches for error in catch["ErrorEquals"]}
    assert caught >= set(BUSINESS_ERRORS)
    for catch in catches:
        # Every failure path writes FAILED, dead-letters to this stage's queue, then fails.
        path = [catch["Next"]]
        while states[path[-1]]["Type"] not in TERMINAL_TYPES:
            path.append(states[path[-1]]["Next"])
        assert path[-3:] == ["RecordFailed", "SendToStageDlq", "Failed"], path
        failure = states[catch["Next"]]["Parameters"]
        assert failure["stage"] == STAGE_TASKS[task]
        assert failure["dlqUrl"].endswith(f"-{STAGE_TASKS[task]}-dlq.fifo")


def test_stage_tasks_run_in_order(definition: dict[str, Any]) -> None:
    states = definition["States"]
    path = [definition["StartAt"]]
    while states[path[-1]]["Type"] not in TERMINAL_TYPES:
        path.append(states[path[-1]]["Next"])
    assert [name for name in path if name in STAGE_TASKS] == ["Validate", "Process", "Aggregate"]
    assert path[-1] == "Completed"


# --- status writes -------------------------------------------------------------------------------


def _status_writes(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: state
        for name, state in definition["States"].items()
        if state.get("Resource") == UPDATE_ITEM
    }


def test_every_status_write_keeps_the_rank_in_step_with_the_status(
    definition: dict[str, Any],
) -> None:
    writes = _status_writes(definition)
    assert len(writes) == 1 + 2 * 3 + 1  # received, before and after each stage, failed
    for name, state in writes.items():
        parameters = state["Parameters"]
        values = parameters["ExpressionAttributeValues"]
        status = FileStatus(values[":status"]["S"])
        assert values[":rank"] == {"N": str(STATUS_RANK[status])}, name
        assert parameters["ExpressionAttributeNames"]["#rank"] == STATUS_RANK_ATTRIBUTE
        assert "#rank = :rank" in parameters["UpdateExpression"], name
        assert "#status = :status" in parameters["UpdateExpression"], name


def test_status_writes_never_lower_the_rank_nor_leave_a_terminal_status(
    definition: dict[str, Any],
) -> None:
    for name, state in _status_writes(definition).items():
        parameters = state["Parameters"]
        condition = parameters["ConditionExpression"]
        values = parameters["ExpressionAttributeValues"]
        assert "attribute_exists(fileId)" in condition, name
        assert "NOT (#status IN (:completed, :failed))" in condition, name
        assert values[":completed"] == {"S": "COMPLETED"}
        assert values[":failed"] == {"S": "FAILED"}
        if values[":status"]["S"] == FileStatus.FAILED:
            # FAILED outranks every status, so it can never lower the rank.
            assert STATUS_RANK[FileStatus.FAILED] == max(STATUS_RANK.values())
        else:
            assert "#rank <= :rank" in condition, name


def test_happy_path_writes_every_status_in_rank_order(definition: dict[str, Any]) -> None:
    states = definition["States"]
    path = [definition["StartAt"]]
    while states[path[-1]]["Type"] not in TERMINAL_TYPES:
        path.append(states[path[-1]]["Next"])
    written = [
        states[name]["Parameters"]["ExpressionAttributeValues"][":status"]["S"]
        for name in path
        if states[name].get("Resource") == UPDATE_ITEM
    ]
    assert written == [status for status in STATUS_RANK if status != FileStatus.FAILED]
    ranks = [STATUS_RANK[FileStatus(status)] for status in written]
    assert ranks == sorted(ranks)
    assert len(set(ranks)) == len(ranks)


def test_a_lost_rank_race_ends_quietly_in_both_error_spellings(
    definition: dict[str, Any],
) -> None:
    states = definition["States"]
    for name, state in _status_writes(definition).items():
        catching = [
            catch
            for catch in state["Catch"]
            if CONDITIONAL_CHECK_SPELLINGS <= set(catch["ErrorEquals"])
        ]
        assert len(catching) == 1, name
        assert states[catching[0]["Next"]]["Type"] == "Succeed", name


def test_execution_input_carries_references_not_file_bodies(definition: dict[str, Any]) -> None:
    for task in STAGE_TASKS:
        payload = definition["States"][task]["Parameters"]["Payload"]
        assert {"bucket.$", "objectKey.$", "versionId.$", "fileId.$"} <= set(payload)
        assert not any("body" in key.lower() for key in payload)


def test_spec_timeout_grows_with_the_stage_timeout() -> None:
    short = spec.execution_timeout_s(PipelineConfig(tenant="a", environment="b"))
    long = spec.execution_timeout_s(
        PipelineConfig(tenant="a", environment="b", stage_timeout_s=900)
    )
    assert long > short > 3 * 7 * 300
