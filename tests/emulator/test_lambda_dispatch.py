"""The Lambda dispatcher (moto's hook) and the in-process Python runtime."""

from __future__ import annotations

import io
import json
import os
import time
import uuid
import zipfile
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto.awslambda_simple.models import LambdaSimpleBackend

from provisioner.emulator.apply import AwsClients
from provisioner.emulator.lambda_dispatch import (
    UNAVAILABLE_ERROR,
    DeployedFunction,
    InvocationResult,
    LambdaDispatcher,
    function_key,
)
from provisioner.emulator.lambda_runtime import LocalFunction, handler_invoker, invoke_handler
from tests.emulator import standin_handlers

STANDIN = "tests.emulator.standin_handlers"
ACCOUNT = "123456789012"


def _create_function(clients: AwsClients, name: str) -> str:
    role = clients.iam.create_role(
        RoleName=f"{name}-role",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
    return clients.lambda_.create_function(
        FunctionName=name,
        Runtime="python3.13",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": buffer.getvalue()},
    )["FunctionArn"]


def _invoke(clients: AwsClients, function: str, payload: Any) -> tuple[str | None, Any]:
    response = clients.lambda_.invoke(FunctionName=function, Payload=json.dumps(payload).encode())
    return response.get("FunctionError"), json.loads(response["Payload"].read())


def _standin(name: str, **environment: str) -> Any:
    return handler_invoker(
        f"{STANDIN}.{name}", environment, function_name=name, memory_mb=256, timeout_s=5
    )


# --- the hook -------------------------------------------------------------------------------


def test_install_refuses_a_moto_hook_with_another_signature(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def invoke(self: Any, function_name: str, qualifier: str | None, body: Any) -> bytes:
        return b""

    monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)
    with pytest.raises(RuntimeError, match="moto changed.*invoke"):
        LambdaDispatcher().install()
    # Nothing was patched by the failed install.
    assert LambdaSimpleBackend.invoke is invoke


def test_install_refuses_a_missing_moto_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(LambdaSimpleBackend, "invoke")
    with pytest.raises(RuntimeError, match="no longer exists"):
        LambdaDispatcher().install()


def test_only_one_dispatcher_per_process(dispatcher: LambdaDispatcher) -> None:
    with pytest.raises(RuntimeError, match="already installed"):
        LambdaDispatcher().install()
    dispatcher.install()  # installing the same one again is harmless


def test_registered_invoker_receives_the_payload(
    clients: AwsClients, dispatcher: LambdaDispatcher
) -> None:
    arn = _create_function(clients, "fn-echo")
    received: list[bytes] = []

    def invoker(_function: DeployedFunction, payload: bytes) -> InvocationResult:
        received.append(payload)
        return InvocationResult.success({"seen": json.loads(payload)})

    dispatcher.register(arn, invoker)  # registered by ARN, invoked by name
    error, payload = _invoke(clients, "fn-echo", {"a": 1})
    assert error is None
    assert payload == {"seen": {"a": 1}}
    assert [json.loads(body) for body in received] == [{"a": 1}]
    assert dispatcher.registered() == frozenset({"fn-echo"})


def test_handler_exception_becomes_a_lambda_function_error(
    clients: AwsClients, dispatcher: LambdaDispatcher
) -> None:
    arn = _create_function(clients, "fn-fail")
    dispatcher.register("fn-fail", _standin("fail"))
    error, payload = _invoke(clients, arn, {"name": "x.csv"})
    assert error == "Unhandled"
    assert payload["errorType"] == "BusinessError"
    assert payload["errorMessage"] == "rejected x.csv"
    assert any("standin_handlers.py" in line for line in payload["stackTrace"])


def test_unregistered_function_fails_instead_of_fake_success(
    clients: AwsClients, dispatcher: LambdaDispatcher
) -> None:
    _create_function(clients, "fn-orphan")
    dispatcher.register("fn-orphan", _standin("echo"))
    dispatcher.unregister("fn-orphan")
    error, payload = _invoke(clients, "fn-orphan", {})
    assert error == "Unhandled"
    assert payload["errorType"] == UNAVAILABLE_ERROR


def test_unknown_function_is_not_found(clients: AwsClients, dispatcher: LambdaDispatcher) -> None:
    with pytest.raises(ClientError) as caught:
        _invoke(clients, "fn-missing", {})
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_uninstall_restores_moto(clients: AwsClients) -> None:
    _create_function(clients, "fn-plain")
    with LambdaDispatcher() as dispatcher:
        dispatcher.register(
            "fn-plain", lambda _function, _payload: InvocationResult.success("ours")
        )
        assert _invoke(clients, "fn-plain", {}) == (None, "ours")
    # moto's canned response (it echoes the payload) is back.
    assert _invoke(clients, "fn-plain", {"x": 1}) == (None, {"x": 1})


@pytest.mark.parametrize(
    ("function", "key"),
    [
        ("fn", "fn"),
        ("fn:live", "fn"),
        ("arn:aws:lambda:us-east-1:123456789012:function:fn", "fn"),
        ("arn:aws:lambda:us-east-1:123456789012:function:fn:7", "fn"),
        ("123456789012:function:fn", "fn"),
    ],
)
def test_function_key_accepts_names_and_arns(function: str, key: str) -> None:
    assert function_key(function) == key


# --- the runtime ----------------------------------------------------------------------------


def test_invocation_sees_exactly_its_environment(
    aws_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEAKY_SETTING", "from-the-service")
    monkeypatch.setenv("STATUS_TABLE_NAME", "another-environments-table")
    monkeypatch.setenv("MOTO_SOMETHING", "kept")
    result = invoke_handler(
        f"{STANDIN}.environment",
        {},
        {"PIPELINE_TENANT": "acme", "MAX_BAD_ROW_RATIO": "0.01"},
        function_name="p-acme-dev-validator",
        memory_mb=512,
        timeout_s=5,
        region="eu-west-1",
    )
    assert result.ok
    seen = result.value()
    assert seen["PIPELINE_TENANT"] == "acme"
    assert seen["MAX_BAD_ROW_RATIO"] == "0.01"
    assert "LEAKY_SETTING" not in seen
    assert "STATUS_TABLE_NAME" not in seen
    assert seen["MOTO_SOMETHING"] == "kept"
    assert seen["AWS_ACCESS_KEY_ID"] == "testing"
    assert seen["AWS_REGION"] == seen["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert seen["AWS_LAMBDA_FUNCTION_NAME"] == "p-acme-dev-validator"
    assert seen["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "512"
    assert "LAMBDA_TASK_ROOT" not in seen
    # Restored afterwards.
    assert os.environ["LEAKY_SETTING"] == "from-the-service"
    assert os.environ["STATUS_TABLE_NAME"] == "another-environments-table"
    assert os.environ["AWS_REGION"] == "us-east-1"
    assert "PIPELINE_TENANT" not in os.environ
    assert "AWS_LAMBDA_FUNCTION_NAME" not in os.environ


def test_what_a_handler_does_to_its_environment_does_not_outlive_it(
    aws_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPELINE_TENANT", "the-service's")
    before = dict(os.environ)
    result = invoke_handler(
        f"{STANDIN}.meddle",
        {},
        {"PIPELINE_TENANT": "acme"},
        function_name="fn",
        memory_mb=128,
        timeout_s=5,
    )
    assert result.value() == "done"
    assert dict(os.environ) == before


def test_context_looks_like_lambdas() -> None:
    result = invoke_handler(
        f"{STANDIN}.describe_context",
        {},
        {},
        function_name="fn-ctx",
        memory_mb=384,
        timeout_s=30,
        region="eu-west-1",
        account_id="210987654321",
    )
    context = result.value()
    assert context["function_name"] == "fn-ctx"
    assert context["function_version"] == "$LATEST"
    assert context["memory_limit_in_mb"] == 384
    assert (
        context["invoked_function_arn"] == "arn:aws:lambda:eu-west-1:210987654321:function:fn-ctx"
    )
    assert context["log_group_name"] == "/aws/lambda/fn-ctx"
    assert len(context["aws_request_id"]) == 36
    assert 0 < context["remaining_ms"] <= 30_000


def test_powertools_inject_lambda_context_accepts_the_context() -> None:
    result = invoke_handler(
        f"{STANDIN}.powertools",
        {},
        {"POWERTOOLS_SERVICE_NAME": "validator"},
        function_name="fn-pt",
        memory_mb=128,
        timeout_s=5,
    )
    assert result.ok, result.payload
    assert result.value() == {"service": "standin"}


@pytest.mark.parametrize(
    ("handler", "error_type"),
    [
        ("unserialisable", "Runtime.MarshalError"),
        ("not_callable", "Runtime.HandlerNotFound"),
        ("does_not_exist", "Runtime.HandlerNotFound"),
    ],
)
def test_runtime_errors_are_named_like_lambdas(handler: str, error_type: str) -> None:
    result = invoke_handler(
        f"{STANDIN}.{handler}", {}, {}, function_name="fn", memory_mb=128, timeout_s=5
    )
    assert result.error_type == error_type
    assert json.loads(result.payload)["errorType"] == error_type


def test_missing_module_is_an_import_error() -> None:
    result = invoke_handler(
        "tests.emulator.no_such_module.handler",
        {},
        {},
        function_name="fn",
        memory_mb=128,
        timeout_s=5,
    )
    assert result.error_type == "Runtime.ImportModuleError"


def test_decimal_results_serialise_as_numbers() -> None:
    result = invoke_handler(
        f"{STANDIN}.decimals", {}, {}, function_name="fn", memory_mb=128, timeout_s=5
    )
    assert result.value() == {"price": 1.5}


def test_a_run_longer_than_the_timeout_is_a_timeout() -> None:
    started = time.monotonic()
    result = invoke_handler(
        f"{STANDIN}.slow", {"sleep_s": 1.05}, {}, function_name="fn", memory_mb=128, timeout_s=1
    )
    assert time.monotonic() - started < 3
    assert result.error_type == "Sandbox.Timedout"


def test_invalid_json_payload_is_an_unmarshal_error() -> None:
    echo = LocalFunction("fn", f"{STANDIN}.echo", {}, memory_mb=128, timeout_s=5)
    assert echo(b"{not json").error_type == "Runtime.UnmarshalError"


# --- Step Functions through the dispatcher --------------------------------------------------


def _state_machine(clients: AwsClients, function_arn: str) -> str:
    definition = {
        "StartAt": "Work",
        "States": {
            "Work": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": function_arn, "Payload.$": "$"},
                "ResultSelector": {"result.$": "$.Payload"},
                "Retry": [
                    {"ErrorEquals": ["TransientError"], "IntervalSeconds": 1, "MaxAttempts": 2}
                ],
                "Catch": [
                    {"ErrorEquals": ["BusinessError"], "ResultPath": "$.caught", "Next": "Caught"}
                ],
                "End": True,
            },
            "Caught": {"Type": "Pass", "End": True},
        },
    }
    return clients.stepfunctions.create_state_machine(
        name="dispatch-test",
        definition=json.dumps(definition),
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/sfn",
    )["stateMachineArn"]


def _run(clients: AwsClients, machine: str, payload: Any, timeout_s: float = 15) -> Any:
    # moto 5.2 names an unnamed execution "None", so every start needs a name.
    execution = clients.stepfunctions.start_execution(
        stateMachineArn=machine, name=uuid.uuid4().hex, input=json.dumps(payload)
    )["executionArn"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        described = clients.stepfunctions.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.05)
    raise AssertionError(f"execution {execution} still running after {timeout_s}s")


def test_step_functions_lambda_tasks_go_through_the_dispatcher(
    clients: AwsClients, dispatcher: LambdaDispatcher
) -> None:
    arn = _create_function(clients, "fn-step")
    machine = _state_machine(clients, arn)

    dispatcher.register(arn, _standin("flaky"))
    standin_handlers.set_transient_failures(1)
    succeeded = _run(clients, machine, {"name": "a.csv"})
    assert succeeded["status"] == "SUCCEEDED"
    assert json.loads(succeeded["output"]) == {"result": {"done": "a.csv"}}
    history = clients.stepfunctions.get_execution_history(executionArn=succeeded["executionArn"])
    scheduled = [e for e in history["events"] if e["type"] == "TaskScheduled"]
    assert len(scheduled) == 2  # the transient failure was retried once

    dispatcher.register(arn, _standin("fail"))
    caught = _run(clients, machine, {"name": "b.csv"})
    assert caught["status"] == "SUCCEEDED"
    output = json.loads(caught["output"])
    assert output["caught"]["Error"] == "BusinessError"
    assert json.loads(output["caught"]["Cause"])["errorMessage"] == "rejected b.csv"
