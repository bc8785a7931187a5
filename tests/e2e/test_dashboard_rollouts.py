"""The dashboard's rollout pages in a real browser (Debian's Chromium through Playwright),
against the real service with the scripted engine: the list, and one rollout whose waves and
targets fill in live from its event stream; pause and resume, a halt past maxFailures with its
reason shown, a cancel, and a tenant key that sees only its own tenant's rollouts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from provisioner.app import create_app
from tests.e2e import test_dashboard as dashboard
from tests.e2e import test_dashboard_fleet as fleet_pages
from tests.e2e.service import serve
from tests.factories import auth
from tests.provisioner.conftest import SCRIPTED_ENGINE, make_settings

pytestmark = pytest.mark.browser

browser = dashboard.browser
page = dashboard.page
screenshot = dashboard.screenshot
sign_in = dashboard.sign_in
Service = fleet_pages.Service
# Each operation of these environments takes about two seconds: long enough to watch.
SLOW = {"script-resources": "2", "script-delay": "1"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("dashboard-rollouts")
    settings = make_settings(
        root / "data",
        f"sqlite:///{root / 'registry.db'}",
        rollout_interval_s=0.1,
        max_concurrent_operations=8,
    )
    with (
        serve(lambda _port: create_app(settings, engine_reference=SCRIPTED_ENGINE)) as url,
        httpx.Client(base_url=url, headers=auth(), timeout=30) as client,
    ):
        yield Service(url, root, client)


def start_rollout(service: Service, body: dict[str, Any]) -> str:
    response = service.client.post("/rollouts", json=body)
    assert response.status_code == 202, response.text
    rollout_id: str = response.json()["id"]
    return rollout_id


def wait_rollout(service: Service, rollout_id: str, states: tuple[str, ...]) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while True:
        body: dict[str, Any] = service.client.get(f"/rollouts/{rollout_id}").json()
        if body["state"] in states:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


def target(page: Page, name: str) -> Any:
    return page.locator(f"tr[data-target='acme/{name}']")


def test_waves_fill_in_live_with_pause_and_resume(page: Page, service: Service) -> None:
    service.publish("/admin/templates", {"name": "gold", "config": {"memory_mb": 1024}})
    for name in ("r1", "r2", "r3", "r4"):
        assert service.create("acme", name, template="gold", tags=SLOW)["state"] == "SUCCEEDED"
    service.publish("/admin/templates/gold/versions", {"config": {"memory_mb": 2048}})

    sign_in(page, service.url)
    rollout_id = start_rollout(
        service,
        {"selector": {"template": "gold"}, "strategy": {"canary": 1, "maxConcurrent": 2}},
    )
    page.goto(f"{service.url}/#/rollouts/{rollout_id}")
    expect(page.get_by_role("heading", level=1, name=f"Rollout {rollout_id}")).to_be_visible()
    canary = page.get_by_role("region", name="Wave 0: canary")
    expect(canary.locator("tr[data-target]")).to_have_count(1)
    expect(page.get_by_role("region", name="Wave 1").locator("tr[data-target]")).to_have_count(2)
    expect(page.locator(".connection")).to_have_text("Live")
    # Pause while the canary runs: it finishes, the next wave does not start.
    expect(canary.locator("tr[data-state='RUNNING']")).to_have_count(1)
    page.get_by_role("button", name="Pause").click()
    expect(page.locator(".page-heading .badge")).to_have_text("PAUSED")
    expect(canary.locator("tr[data-state='SUCCEEDED']")).to_have_count(1)
    expect(page.locator("#rollout-progress")).to_contain_text("1 of 4 done")
    expect(page.get_by_role("log", name="Rollout events")).to_contain_text("rollout.paused")
    assert [t["state"] for t in wait_rollout(service, rollout_id, ("PAUSED",))["targets"]][1:] == [
        "PENDING",
        "PENDING",
        "PENDING",
    ]
    expect(page.get_by_role("button", name="Pause")).to_be_disabled()
    screenshot(page, "rollout-paused", full_page=True)

    page.get_by_role("button", name="Resume").click()
    expect(page.locator(".page-heading .badge")).to_have_text("SUCCEEDED", timeout=60_000)
    expect(page.locator("tr[data-target][data-state='SUCCEEDED']")).to_have_count(4)
    expect(target(page, "r2")).to_contain_text("gold@1 → gold@2")
    expect(page.locator(".connection")).to_have_text("The rollout has ended.")
    expect(page.get_by_role("button", name="Cancel rollout")).to_be_disabled()
    log = page.get_by_role("log", name="Rollout events")
    expect(log.locator("[data-type='target.succeeded']")).to_have_count(4)
    screenshot(page, "rollout", full_page=True)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Rollouts").click()
    row = page.locator(f"tr[data-rollout='{rollout_id}']")
    expect(row).to_contain_text("SUCCEEDED")
    expect(row).to_contain_text("4 of 4 done")
    expect(row).to_contain_text("template gold")


def test_a_halt_shows_its_reason_and_a_cancel_skips_the_rest(page: Page, service: Service) -> None:
    service.create("acme", "h1", tags=SLOW)
    assert service.create("acme", "h2", tags={"script-fail-at": "1"})["state"] == "FAILED"
    service.create("acme", "h3", tags=SLOW)
    halted = start_rollout(
        service,
        {
            "selector": {"environments": ["acme/h1", "acme/h2", "acme/h3"]},
            "strategy": {"canary": 1, "maxConcurrent": 1, "maxFailures": 0, "force": True},
        },
    )
    sign_in(page, service.url)
    page.goto(f"{service.url}/#/rollouts/{halted}")
    expect(page.locator(".page-heading .badge")).to_have_text("HALTED", timeout=60_000)
    expect(page.locator("#rollout-reason")).to_contain_text("Halted:")
    expect(target(page, "h2")).to_have_attribute("data-state", "FAILED")
    expect(target(page, "h2").locator(".error-cell")).not_to_have_text("—")
    expect(target(page, "h3")).to_have_attribute("data-state", "PENDING")
    screenshot(page, "rollout-halted", full_page=True)

    cancelled = start_rollout(
        service,
        {
            "selector": {"environments": ["acme/h1", "acme/h3"]},
            "strategy": {"canary": 1, "maxConcurrent": 1, "force": True},
        },
    )
    page.goto(f"{service.url}/#/rollouts/{cancelled}")
    expect(target(page, "h1")).to_have_attribute("data-state", "RUNNING")
    page.get_by_role("button", name="Cancel rollout").click()
    expect(page.locator("#flash")).to_contain_text("Rollout cancel requested")
    expect(page.locator(".page-heading .badge")).to_have_text("CANCELLED", timeout=60_000)
    expect(target(page, "h3")).to_have_attribute("data-state", "SKIPPED")
    # A second cancel is refused by the service (409), said plainly.
    assert service.client.post(f"/rollouts/{cancelled}/cancel").status_code == 409

    # A tenant key sees only its own tenant's rollouts.
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, service.url, service.key("tenant:globex"))
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Rollouts").click()
    expect(page.get_by_text("No rollouts yet.")).to_be_visible()
    page.goto(f"{service.url}/#/rollouts/{halted}")
    expect(page.get_by_text(f"Rollout {halted} was not found.")).to_be_visible()
