"""The dashboard's fleet, template and approvals pages in a real browser (Debian's Chromium
through Playwright), against the real service with the scripted engine and a scheduler that
samples the fleet every second.

The fleet page's counts, its chart per template version and its chart over time; a template's
versions with what changed, publishing a version through the form (a 422 next to its field, a
tenant key's 403 in the summary); the approvals queue with the preview's changes, the
requester's own approval refused (403, shown), another admin's approval and a rejection.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from provisioner.app import create_app
from tests.e2e import test_dashboard as dashboard
from tests.e2e.service import serve
from tests.factories import FINAL_STATES, auth, environment_body
from tests.provisioner.conftest import SCRIPTED_ENGINE, make_settings

pytestmark = pytest.mark.browser

browser = dashboard.browser
page = dashboard.page
screenshot = dashboard.screenshot
sign_in = dashboard.sign_in


@dataclass
class Service:
    url: str
    data_dir: Path
    client: httpx.Client  # the API with the bootstrap admin key

    def wait(self, operation_id: str, states: tuple[str, ...] = FINAL_STATES) -> dict[str, Any]:
        deadline = time.monotonic() + 60
        while True:
            body: dict[str, Any] = self.client.get(f"/operations/{operation_id}").json()
            if body["state"] in states:
                return body
            assert time.monotonic() < deadline, body
            time.sleep(0.1)

    def create(self, tenant: str, name: str, **extra: Any) -> dict[str, Any]:
        response = self.client.post("/environments", json=environment_body(tenant, name, **extra))
        assert response.status_code == 202, response.text
        return self.wait(response.json()["id"])

    def wait_for_sample(self, **expected: int) -> None:
        deadline = time.monotonic() + 60
        while True:
            samples = self.client.get("/fleet/history", params={"minutes": 5}).json()["samples"]
            if samples and all(samples[-1][field] == value for field, value in expected.items()):
                return
            assert time.monotonic() < deadline, samples[-1:]
            time.sleep(0.2)

    def key(self, scope: str) -> str:
        response = self.client.post("/admin/api-keys", json={"scope": scope})
        assert response.status_code == 201, response.text
        key: str = response.json()["key"]
        return key

    def publish(self, path: str, body: dict[str, Any]) -> None:
        response = self.client.post(path, json=body)
        assert response.status_code == 201, response.text


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("dashboard-fleet")
    settings = make_settings(
        root / "data",
        f"sqlite:///{root / 'registry.db'}",
        schedule_interval_s=0.5,
        fleet_sample_interval_s=1,
    )
    with (
        serve(lambda _port: create_app(settings, engine_reference=SCRIPTED_ENGINE)) as url,
        httpx.Client(base_url=url, headers=auth(), timeout=30) as client,
    ):
        yield Service(url, root, client)


def sign_in_again(page: Page, service: Service, key: str) -> None:
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, service.url, key)


def open_page(page: Page, service: Service, hash_path: str, heading: str) -> None:
    page.goto(f"{service.url}/#{hash_path}")
    expect(page.get_by_role("heading", level=1, name=heading)).to_be_visible()


def test_fleet_and_template_pages(page: Page, fleet: Service) -> None:
    fleet.publish("/admin/templates", {"name": "gold", "config": {"memory_mb": 1024}})
    assert fleet.create("acme", "one", template="gold")["state"] == "SUCCEEDED"
    assert fleet.create("acme", "two", template="gold")["state"] == "SUCCEEDED"
    assert fleet.create("globex", "plain")["state"] == "SUCCEEDED"
    broken = fleet.create("globex", "broken", tags={"script-fail-at": "1"})
    assert broken["state"] == "FAILED"
    fleet.publish("/admin/templates/gold/versions", {"config": {"memory_mb": 2048}})
    # The page reads the history once and then every 15 s: wait for the scheduler's first
    # sample that has seen all of the above, so the page's first read already holds it.
    fleet.wait_for_sample(failing=1, outdated=3)

    sign_in(page, fleet.url)
    page.get_by_role("link", name="Fleet", exact=True).click()
    expect(page.get_by_role("heading", level=1, name="Fleet")).to_be_visible()
    counts = page.get_by_role("group", name="Fleet counts")
    expect(counts.locator("[data-count='total'] .count-value")).to_have_text("4")
    # one and two are behind gold@2; the failed create never applied any code.
    expect(counts.locator("[data-count='outdated'] .count-value")).to_have_text("3")
    expect(counts.locator("[data-count='failing'] .count-value")).to_have_text("1")
    expect(counts.locator("[data-count='drifted'] .count-value")).to_have_text("0")
    expect(page.get_by_text("Drift: UNKNOWN 4 · Health: UNKNOWN 4")).to_be_visible()
    chart = page.locator("figure[data-chart='Environments per template version']")
    expect(chart.locator("rect[data-label='gold@1']")).to_have_attribute("data-value", "2")
    expect(chart.locator("rect[data-label='gold@1']")).to_have_class("chart-bar tone-warn")
    expect(chart.locator("rect[data-label='default@1']")).to_have_attribute("data-value", "2")
    table = page.get_by_role("table", name="By template version")
    expect(table.locator("tr[data-template='gold@1']")).to_contain_text("gold122")
    codes = page.get_by_role("table", name="By code version")
    expect(codes.locator("tr[data-code='none']")).to_contain_text("never applied")
    expect(codes.locator("tr").nth(1)).to_contain_text("current")
    # The scheduler samples every second: the chart over time fills with the real counts.
    history = page.locator("figure[data-chart='Failing and drifted environments over time']")
    expect(history.locator("path[data-series='failing']")).to_have_count(1, timeout=30_000)
    latest = history.locator("tbody tr").last.locator("td")
    expect(latest.nth(1)).to_have_text("1")  # failing
    expect(latest.nth(2)).to_have_text("0")  # drifted
    expect(latest.nth(3)).to_have_text("3")  # outdated
    screenshot(page, "fleet", full_page=True)

    # The outdated count opens the list of exactly those environments.
    counts.locator("[data-count='outdated']").click()
    expect(page.get_by_role("heading", level=1, name="Environments")).to_be_visible()
    expect(page.get_by_label("Template and drift")).to_have_value("outdated")
    expect(page.locator("tr[data-environment]")).to_have_count(3)
    expect(page.locator("tr[data-environment='globex/plain']")).to_have_count(0)
    page.get_by_label("Template and drift").select_option("current")
    expect(page.locator("tr[data-environment]")).to_have_count(1)
    page.get_by_label("Template and drift").select_option("drifted")
    expect(page.get_by_text("No environments match these filters.")).to_be_visible()
    page.go_back()
    expect(page.get_by_role("heading", level=1, name="Fleet")).to_be_visible()

    # A tenant's own fleet, by the filter.
    page.get_by_role("searchbox", name="Tenant").fill("acme")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_role("heading", name="Tenant acme")).to_be_visible()
    expect(counts.locator("[data-count='total'] .count-value")).to_have_text("2")

    # The template page: every version, what changed, the environments on each.
    table.get_by_role("link", name="gold").first.click()
    expect(page.get_by_role("heading", level=1, name="Template gold")).to_be_visible()
    versions = page.get_by_role("table", name="Versions of gold")
    memory = versions.locator("tr[data-setting='memory_mb']")
    expect(memory.locator("td[data-version='1']")).to_have_text("1024")
    expect(memory.locator("td[data-version='2']")).to_have_text("2048")
    expect(memory.locator("td[data-version='2']")).to_have_class("num changed")
    expect(versions.locator("tr[data-setting='max_bad_row_ratio'] td.changed")).to_have_count(0)
    expect(page.locator("li[data-version='1']")).to_contain_text("gold@1: 2")
    expect(page.locator("li[data-version='1']")).to_contain_text("outdated")

    # Publish gold@3 through the form: the service's 422 next to its field first.
    page.get_by_role("button", name="Publish a new version…").click()
    form = page.get_by_role("form", name="Publish a new version of gold")
    expect(form.get_by_label("Memory (MB)")).to_have_value("2048")
    form.get_by_label("Memory (MB)").fill("64")
    form.get_by_role("button", name="Publish gold@next").click()
    expect(form.locator("[data-field='config.memory_mb'] .field-error")).to_contain_text(
        "greater than or equal to 128"
    )
    form.get_by_label("Memory (MB)").fill("4096")
    form.get_by_label("Description").fill("bigger functions")
    form.get_by_role("button", name="Publish gold@next").click()
    expect(page.locator("#flash")).to_contain_text("Published gold@3.")
    expect(memory.locator("td[data-version='3']")).to_have_text("4096")
    assert fleet.client.get("/templates/gold").json()["latestVersion"] == 3
    screenshot(page, "template", full_page=True)

    # The list, and a new template with a bad name: 422 next to the name.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Templates").click()
    expect(page.locator("tr[data-template='gold']")).to_contain_text("3")
    expect(page.locator("tr[data-template='default']")).to_be_visible()
    page.get_by_role("button", name="Publish a template…").click()
    form = page.get_by_role("form", name="Publish a template")
    form.get_by_label("Template name").fill("Silver!")
    form.get_by_role("button", name="Publish template").click()
    expect(form.locator("[data-field='name'] .field-error")).to_be_visible()
    form.get_by_label("Template name").fill("silver")
    form.get_by_role("button", name="Publish template").click()
    expect(page.get_by_role("heading", level=1, name="Template silver")).to_be_visible()
    screenshot(page, "templates")


def test_tenant_key_sees_its_own_fleet_and_cannot_publish(page: Page, fleet: Service) -> None:
    fleet.create("initech", "dev")
    key = fleet.key("tenant:initech")
    sign_in(page, fleet.url, key)
    open_page(page, fleet, "/fleet", "Fleet")
    expect(page.get_by_role("heading", name="Tenant initech")).to_be_visible()
    counts = page.get_by_role("group", name="Fleet counts")
    expect(counts.locator("[data-count='total'] .count-value")).to_have_text("1")
    # Another tenant's fleet answers like a missing one, said plainly.
    page.get_by_role("searchbox", name="Tenant").fill("acme")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_role("alert").first).to_contain_text("not_found: tenant acme not found")

    open_page(page, fleet, "/templates/default", "Template default")
    page.get_by_role("button", name="Publish a new version…").click()
    form = page.get_by_role("form", name="Publish a new version of default")
    form.get_by_role("button", name="Publish default@next").click()
    expect(form.locator(".form-summary")).to_contain_text("this route needs an admin API key")


def test_approvals_queue(page: Page, fleet: Service) -> None:
    created = fleet.create("acme", "prod", protected=True, tags={"script-resources": "2"})
    assert created["state"] == "SUCCEEDED"
    patched = fleet.client.patch("/environments/acme/prod", json={"config": {"memory_mb": 1024}})
    assert patched.status_code == 202, patched.text
    update = fleet.wait(patched.json()["id"], ("AWAITING_APPROVAL",))

    # The requester's own key: the queue shows the preview, the approval is refused.
    sign_in(page, fleet.url)
    page.get_by_role("link", name="Approvals").click()
    card = page.locator(f"li[data-operation='{update['id']}']")
    expect(card).to_contain_text("update of acme/prod")
    expect(card).to_contain_text("Changes: same 2")
    expect(card).to_contain_text("2 unchanged")
    card.get_by_role("button", name="Approve update of acme/prod").click()
    expect(card.get_by_role("alert")).to_contain_text(
        "forbidden: an operation must be approved by an admin key other than its requester's"
    )
    screenshot(page, "approvals-own-key")
    assert fleet.client.get(f"/operations/{update['id']}").json()["state"] == "AWAITING_APPROVAL"

    # Another admin approves: it runs for real.
    sign_in_again(page, fleet, fleet.key("admin"))
    page.get_by_role("link", name="Approvals").click()
    card.get_by_role("button", name="Approve update of acme/prod").click()
    expect(page.locator("#flash")).to_contain_text("Approved the update of acme/prod")
    expect(card).to_have_count(0)
    assert fleet.wait(update["id"])["state"] == "SUCCEEDED"
    assert fleet.client.get("/environments/acme/prod").json()["config"]["memory_mb"] == 1024

    # A destroy waits with every resource as a delete; rejecting it cancels it.
    destroy = fleet.client.delete("/environments/acme/prod").json()
    fleet.wait(destroy["id"], ("AWAITING_APPROVAL",))
    page.get_by_role("button", name="Refresh").click()
    card = page.locator(f"li[data-operation='{destroy['id']}']")
    expect(card).to_contain_text("Changes: delete 2")
    expect(card.locator("tr.step-delete")).to_have_count(2)
    screenshot(page, "approvals")
    card.get_by_role("button", name="Reject destroy of acme/prod").click()
    expect(page.locator("#flash")).to_contain_text("Rejected the destroy of acme/prod")
    expect(page.get_by_text("Nothing is awaiting approval.")).to_be_visible()
    assert fleet.wait(destroy["id"])["state"] == "CANCELLED"

    # A tenant key sees its tenant's queue; approving is for admin keys only.
    again = fleet.client.patch("/environments/acme/prod", json={"config": {"memory_mb": 2048}})
    fleet.wait(again.json()["id"], ("AWAITING_APPROVAL",))
    sign_in_again(page, fleet, fleet.key("tenant:acme"))
    page.get_by_role("link", name="Approvals").click()
    card = page.locator(f"li[data-operation='{again.json()['id']}']")
    card.get_by_role("button", name="Approve update of acme/prod").click()
    expect(card.get_by_role("alert")).to_contain_text("only admin API keys may approve")
    sign_in_again(page, fleet, fleet.key("tenant:globex"))
    page.get_by_role("link", name="Approvals").click()
    expect(page.get_by_text("Nothing is awaiting approval.")).to_be_visible()
