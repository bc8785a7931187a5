"""Templates end to end on the local engine: a template version's settings reach the emulator's
functions and the running pipeline, a newer version marks environments outdated, moving to it
applies it; and an update that cannot apply (a resource changed out of band) fails for real."""

from __future__ import annotations

from typing import Any

from tests.e2e.fleet import BETWEEN_THRESHOLDS, deployed, publish
from tests.e2e.out_of_band import break_status_table, repair_status_table
from tests.e2e.service import RunningService
from tests.e2e.trades import ROWS

GOLD_1 = {"memory_mb": 512, "max_bad_row_ratio": 0.05}
GOLD_2 = {"memory_mb": 1024, "max_bad_row_ratio": 0.25}


def check_file(service: RunningService, environment: dict[str, Any], key: str) -> dict[str, Any]:
    identifier = service.upload(environment, key, BETWEEN_THRESHOLDS)
    return service.wait_for_file(environment["tenant"], environment["name"], identifier)


def test_template_settings_reach_the_emulator_and_the_pipeline(service: RunningService) -> None:
    publish(service, "gold", GOLD_1)
    moved, stays = service.create_many("acme", ["tpl-moved", "tpl-stays"], template="gold")
    for environment in (moved, stays):
        assert environment["template"] == {"name": "gold", "version": 1}
        assert environment["outdated"] is False
        assert deployed(service, environment) == ({512}, "0.05")
    rejected = check_file(service, moved, "incoming/before.csv")
    assert rejected["status"] == "FAILED"
    assert (rejected["error"]["stage"], rejected["error"]["type"]) == (
        "validator",
        "InvalidFileError",
    )

    publish(service, "gold", GOLD_2)
    listed = service.client.get("/environments?outdated=true&template=gold&tenant=acme").json()
    outdated = {item["name"]: item for item in listed["items"]}
    assert {"tpl-moved", "tpl-stays"} <= set(outdated)
    for name in ("tpl-moved", "tpl-stays"):
        assert outdated[name]["outdated"] is True
        assert outdated[name]["outdatedReasons"] == ["template gold@1, latest gold@2"]

    response = service.client.patch("/environments/acme/tpl-moved", json={"template": "gold@2"})
    assert response.status_code == 202, response.text
    assert service.wait(response.json()["id"], timeout=300)["state"] == "SUCCEEDED"
    moved = service.client.get("/environments/acme/tpl-moved").json()
    assert moved["template"] == {"name": "gold", "version": 2}
    assert (moved["outdated"], moved["outdatedReasons"]) == (False, [])
    assert moved["config"]["memory_mb"] == 1024
    assert deployed(service, moved) == ({1024}, "0.25")
    assert deployed(service, stays) == ({512}, "0.05")  # not touched

    accepted = check_file(service, moved, "incoming/after.csv")
    assert accepted["status"] == "COMPLETED", accepted
    assert (accepted["rowCount"], accepted["rejectedRows"]) == (len(ROWS), 1)
    assert check_file(service, stays, "incoming/after.csv")["status"] == "FAILED"


def test_an_update_that_cannot_apply_fails_for_real(service: RunningService) -> None:
    publish(service, "silver", GOLD_1)
    [environment] = service.create_many("acme", ["tpl-broken"], template="silver")
    break_status_table(service, environment)
    response = service.client.patch("/environments/acme/tpl-broken", json={"config": GOLD_2})
    assert response.status_code == 202, response.text
    failed = service.wait(response.json()["id"], timeout=300)
    assert failed["state"] == "FAILED", failed
    assert failed["error"]["code"] == "engine_error"
    assert environment["outputs"]["statusTableName"] in failed["error"]["message"]
    assert "differ from the spec" in failed["error"]["message"]
    assert service.client.get("/environments/acme/tpl-broken").json()["state"] == "FAILED"
    # The data plane still works meanwhile; put the table back and the same update applies.
    assert check_file(service, environment, "incoming/meanwhile.csv")["status"] == "FAILED"
    repair_status_table(service, environment)
    response = service.client.patch("/environments/acme/tpl-broken", json={"config": GOLD_2})
    assert service.wait(response.json()["id"], timeout=300)["state"] == "SUCCEEDED"
    repaired = service.client.get("/environments/acme/tpl-broken").json()
    assert repaired["state"] == "READY"
    assert deployed(service, repaired) == ({1024}, "0.25")
