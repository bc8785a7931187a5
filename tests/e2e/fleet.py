"""Helpers of the fleet end-to-end tests (templates, rollouts): publishing template versions
and reading what the emulator runs."""

from __future__ import annotations

from typing import Any

from tests.e2e.out_of_band import function_configuration
from tests.e2e.service import RunningService
from tests.e2e.trades import ROWS, trades_csv

# One bad row in seven (14 %): rejected under a 5 % threshold, accepted under 25 %.
BETWEEN_THRESHOLDS = trades_csv([*ROWS, ("not-a-time", "AAPL", "1", "1")])
STAGES = ("validator", "processor", "aggregator")


def publish(service: RunningService, name: str, config: dict[str, Any]) -> dict[str, Any]:
    """The template's first version, or its next one."""
    first = service.client.get(f"/templates/{name}").status_code == 404
    if first:
        response = service.client.post("/admin/templates", json={"name": name, "config": config})
    else:
        response = service.client.post(f"/admin/templates/{name}/versions", json={"config": config})
    assert response.status_code == 201, response.text
    published: dict[str, Any] = response.json()
    return published


def deployed(service: RunningService, environment: dict[str, Any]) -> tuple[set[int], str]:
    """The stage functions' memory sizes and the validator's threshold, as the emulator has them."""
    memory = {function_configuration(service, environment, stage)["MemorySize"] for stage in STAGES}
    variables = function_configuration(service, environment, "validator")["Environment"]
    return memory, variables["Variables"]["MAX_BAD_ROW_RATIO"]
