"""moto's Step Functions interpreter with its definitions parsed once and its service calls sent
in process: the same executions, fewer parses, no socket."""

from __future__ import annotations

import importlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from provisioner.emulator.lambda_dispatch import (
    DeployedFunction,
    InvocationResult,
    LambdaDispatcher,
)
from provisioner.emulator.server import EMULATOR_CONFIG, EmulatorServer
from provisioner.emulator.step_functions import (
    CLIENT_FACTORY_MODULES,
    FastInterpreter,
    _assign_heap_keys,
)
from tests.emulator.conftest import REGION
from tests.emulator.test_in_process import CountingTransport, _function

pytestmark = pytest.mark.slow

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/sfn"


@pytest.fixture
def emulator(aws_credentials: None) -> Iterator[EmulatorServer]:
    server = EmulatorServer(port=0)
    server.start()
    try:
        yield server
    finally:
        server.reset()
        server.stop()


@pytest.fixture
def transport(emulator: EmulatorServer) -> CountingTransport:
    return CountingTransport(emulator.gate, emulator.internal_endpoint_url)


@pytest.fixture
def interpreter(transport: CountingTransport) -> Iterator[FastInterpreter]:
    installed = FastInterpreter(transport)
    installed.install()
    try:
        yield installed
    finally:
        installed.uninstall()


def _client(emulator: EmulatorServer, service: str) -> Any:
    return boto3.session.Session(region_name=REGION).client(  # type: ignore[call-overload]
        service, endpoint_url=emulator.internal_endpoint_url
    )


def _run(emulator: EmulatorServer, machine: str, payload: Any) -> dict[str, Any]:
    sfn = _client(emulator, "stepfunctions")
    arn = sfn.start_execution(
        stateMachineArn=machine, name=uuid.uuid4().hex, input=json.dumps(payload)
    )["executionArn"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        described: dict[str, Any] = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.05)
    raise AssertionError(f"{arn} still running")


def _pipeline_like(emulator: EmulatorServer, function_arn: str, queue_url: str) -> str:
    """Each integration the pipeline uses: a status write, a Lambda task, a DLQ message."""
    definition = {
        "StartAt": "Record",
        "States": {
            "Record": {
                "Type": "Task",
                "Resource": "arn:aws:states:::dynamodb:updateItem",
                "Parameters": {
                    "TableName": "status",
                    "Key": {"fileId": {"S.$": "$.fileId"}},
                    "UpdateExpression": "SET #s = :s",
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": {":s": {"S": "RECEIVED"}},
                },
                "ResultPath": None,
                "Next": "Work",
            },
            "Work": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": function_arn, "Payload.$": "$"},
                "ResultSelector": {"result.$": "$.Payload"},
                "ResultPath": "$.work",
                "Next": "Notify",
            },
            "Notify": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage",
                "Parameters": {"QueueUrl": queue_url, "MessageBody.$": "$.work.result"},
                "ResultPath": None,
                "End": True,
            },
        },
    }
    arn: str = _client(emulator, "stepfunctions").create_state_machine(
        name="pipeline-like", definition=json.dumps(definition), roleArn=ROLE
    )["stateMachineArn"]
    return arn


def test_executions_run_the_same_without_the_socket(
    emulator: EmulatorServer, transport: CountingTransport, interpreter: FastInterpreter
) -> None:
    _client(emulator, "dynamodb").create_table(
        TableName="status",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "fileId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "fileId", "AttributeType": "S"}],
    )
    sqs = _client(emulator, "sqs")
    queue_url = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    machine = _pipeline_like(emulator, _function(emulator, "work"), queue_url)

    def invoker(function: DeployedFunction, payload: bytes) -> InvocationResult:
        return InvocationResult.success({"doubled": json.loads(payload)["n"] * 2})

    with LambdaDispatcher() as dispatcher:
        dispatcher.register("work", invoker)
        outcomes = [_run(emulator, machine, {"fileId": f"f{n}", "n": n}) for n in (1, 2)]
    assert [outcome["status"] for outcome in outcomes] == ["SUCCEEDED", "SUCCEEDED"]
    assert [json.loads(outcome["output"])["work"] for outcome in outcomes] == [
        {"result": {"doubled": 2}},
        {"result": {"doubled": 4}},
    ]
    item = _client(emulator, "dynamodb").get_item(TableName="status", Key={"fileId": {"S": "f2"}})
    assert item["Item"]["status"] == {"S": "RECEIVED"}
    bodies = [
        m["Body"]
        for m in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    ]
    assert sorted(json.loads(body)["doubled"] for body in bodies) == [2, 4]
    # Three integration calls per execution, all in process; one parse for both executions.
    assert len(transport.answered) == 6
    assert interpreter.parses == 1


def test_retries_are_counted_per_execution_on_a_shared_program(
    emulator: EmulatorServer, interpreter: FastInterpreter
) -> None:
    """Retry state lives in each execution's heap: concurrent executions of one parsed program
    each get their own attempts."""
    function_arn = _function(emulator, "flaky")
    definition = {
        "StartAt": "Try",
        "States": {
            "Try": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": function_arn, "Payload.$": "$"},
                "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "MaxAttempts": 2}],
                "End": True,
            }
        },
    }
    machine = _client(emulator, "stepfunctions").create_state_machine(
        name="flaky", definition=json.dumps(definition), roleArn=ROLE
    )["stateMachineArn"]
    calls: dict[str, int] = {}
    lock = threading.Lock()

    def invoker(function: DeployedFunction, payload: bytes) -> InvocationResult:
        with lock:
            name = json.loads(payload)["name"]
            calls[name] = calls.get(name, 0) + 1
        return InvocationResult.failure("Boom", "always fails")

    with LambdaDispatcher() as dispatcher:
        dispatcher.register("flaky", invoker)
        outcomes: list[dict[str, Any]] = []
        runs = [
            threading.Thread(
                target=lambda n=n: outcomes.append(_run(emulator, machine, {"name": n}))
            )
            for n in ("a", "b", "c")
        ]
        for run in runs:
            run.start()
        for run in runs:
            run.join(60)
    assert [outcome["status"] for outcome in outcomes] == ["FAILED"] * 3
    assert calls == {"a": 3, "b": 3, "c": 3}  # the first attempt and two retries, each
    assert interpreter.parses == 1


def test_every_component_has_its_heap_key_before_it_is_shared() -> None:
    from moto.stepfunctions.parser.asl.component.component import Component
    from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    definition = {
        "StartAt": "Try",
        "States": {
            "Try": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "f"},
                "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 2}],
                "End": True,
            }
        },
    }
    program = AmazonStateLanguageParser.parse(json.dumps(definition))[0]
    _assign_heap_keys(program)
    found: list[EvalComponent] = []
    seen: set[int] = set()
    pending: list[Any] = [program]
    while pending:
        node = pending.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, EvalComponent):
            found.append(node)
        if isinstance(node, Component):
            pending.extend(vars(node).values())
        elif isinstance(node, list | tuple):
            pending.extend(node)
        elif isinstance(node, dict):
            pending.extend(node.values())
    retry_counters = [node for node in found if type(node).__name__ == "MaxAttemptsDecl"]
    assert retry_counters, "the walk must reach the retry counters"
    assert all(node._EvalComponent__heap_key is not None for node in found)  # type: ignore[attr-defined]


def test_install_restores_moto_on_uninstall(transport: CountingTransport) -> None:
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    modules = [importlib.import_module(name) for name in CLIENT_FACTORY_MODULES]
    factory = modules[0].boto_client_for
    entrypoint = ExecutionWorker.__dict__["_get_evaluation_entrypoint"]
    interpreter = FastInterpreter(transport)
    interpreter.install()
    interpreter.install()  # idempotent
    try:
        assert all(module.boto_client_for == interpreter.client_for for module in modules)
        assert ExecutionWorker.__dict__["_get_evaluation_entrypoint"] is not entrypoint
        with pytest.raises(RuntimeError, match="already patched"):
            FastInterpreter(transport).install()
        first = interpreter.client_for(REGION, "dynamodb")
        assert interpreter.client_for(REGION, "dynamodb") is first  # built once
        assert interpreter.client_for("eu-west-1", "dynamodb") is not first
    finally:
        interpreter.uninstall()
    assert all(module.boto_client_for is factory for module in modules)
    assert ExecutionWorker.__dict__["_get_evaluation_entrypoint"] is entrypoint


def test_install_refuses_a_moto_that_moved_the_factory(
    transport: CountingTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = importlib.import_module(CLIENT_FACTORY_MODULES[3])
    monkeypatch.setattr(module, "boto_client_for", lambda *args: None)
    with pytest.raises(RuntimeError, match="moto changed"):
        FastInterpreter(transport).install()
    assert importlib.import_module(CLIENT_FACTORY_MODULES[0]).boto_client_for is not None


def test_under_mock_aws_moto_builds_its_own_clients(
    aws_credentials: None, transport: CountingTransport
) -> None:
    interpreter = FastInterpreter(transport)
    interpreter.install()
    try:
        with mock_aws(config=EMULATOR_CONFIG):  # type: ignore[arg-type]
            client = interpreter.client_for(REGION, "dynamodb")
            # moto's own factory in decorator mode: the real AWS endpoint, answered by the stubber.
            assert client.meta.endpoint_url == f"https://dynamodb.{REGION}.amazonaws.com"
    finally:
        interpreter.uninstall()
