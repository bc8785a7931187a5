"""A local environment's resources read and changed straight in the emulator, behind the
service's back, the way someone with console access would.

`break_status_table` is a change the local applier refuses to reconcile (it does not replace
tables: `provisioner.emulator.apply.storage.Table`), so every later update of the environment
fails for real, in the engine, until `repair_status_table` puts it back. The data plane keeps
working meanwhile: only the table's billing mode changes, not its data or keys.
"""

from __future__ import annotations

from typing import Any

from stacks.spec import FunctionName
from tests.e2e.service import RunningService


def break_status_table(service: RunningService, environment: dict[str, Any]) -> None:
    """Switch the status table to provisioned capacity (the spec says on-demand)."""
    service.aws(environment, "dynamodb").update_table(
        TableName=environment["outputs"]["statusTableName"],
        BillingMode="PROVISIONED",
        ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
    )


def repair_status_table(service: RunningService, environment: dict[str, Any]) -> None:
    service.aws(environment, "dynamodb").update_table(
        TableName=environment["outputs"]["statusTableName"], BillingMode="PAY_PER_REQUEST"
    )


def function_configuration(
    service: RunningService, environment: dict[str, Any], function: FunctionName
) -> dict[str, Any]:
    """What the emulator's Lambda says about one of the environment's functions."""
    name = environment["outputs"][f"{function}FunctionName"]
    configuration: dict[str, Any] = service.aws(environment, "lambda").get_function_configuration(
        FunctionName=name
    )
    return configuration
