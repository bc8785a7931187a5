"""The ops dashboard in a real browser: Debian's headless Chromium driven by Playwright, against
the real service (uvicorn on a free port, in a thread of the test process).

Phase 1, with the scripted engine: sign in, create through the form (a 422 shows next to its
field first), live progress from the SSE stream to READY (and its resume after a drop), preview,
destroy behind the typed confirmation, the audit log for admin and tenant keys, a 401 signing
the user out, and API text that looks like markup shown as text.

Phase 2, with the local engine (the service as `make run` starts it): an environment created
through the form, files uploaded with an S3 client shown COMPLETED / FAILED, a failure retried,
the ingest DLQ peeked at and redriven.

Screenshots land in test-output/screenshots/ (gitignored); docs/dashboard.png is a copy of
environment.png.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, Route, expect, sync_playwright

from provisioner.app import create_app
from provisioner.config import Settings
from tests.e2e.service import RunningService, free_port, serve
from tests.e2e.trades import trades_csv
from tests.factories import ADMIN_KEY, auth, environment_body
from tests.provisioner.conftest import SCRIPTED_ENGINE, make_settings

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
VIEWPORT = {"width": 1280, "height": 860}

expect.set_options(timeout=15_000)


# --- the service and the browser ---


@dataclass
class Service:
    url: str
    data_dir: Path
    client: httpx.Client  # the API with the admin key, for arranging and checking

    def create(self, tenant: str, name: str, **script: str) -> str:
        body = environment_body(tenant, name, script=script or None)
        response = self.client.post("/environments", json=body)
        assert response.status_code == 202, response.text
        operation_id: str = response.json()["id"]
        return operation_id


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The service with the scripted engine (its speed and failures set by tags)."""
    root = tmp_path_factory.mktemp("dashboard")
    settings = make_settings(root / "data", f"sqlite:///{root / 'registry.db'}")
    with (
        serve(lambda _port: create_app(settings, engine_reference=SCRIPTED_ENGINE)) as url,
        httpx.Client(base_url=url, headers=auth(), timeout=30) as client,
    ):
        yield Service(url, root, client)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the dashboard's browser test needs Debian's Chromium "
            "(apt-get install chromium; .ci/run does it)",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    # An uncaught exception in the dashboard fails the test that caused it.
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, errors


def screenshot(page: Page, name: str, *, full_page: bool = False) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


# --- what a user does ---


def sign_in(page: Page, url: str, key: str = ADMIN_KEY) -> None:
    page.goto(url + "/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1, name="Environments")).to_be_visible()


def open_create_form(page: Page) -> None:
    page.get_by_role("link", name="New environment").first.click()
    # Wait for the form: the list it replaces has a "Tenant" field of its own (a filter).
    expect(page.get_by_role("heading", level=1, name="New environment")).to_be_visible()


def open_environment(page: Page, tenant: str, name: str) -> None:
    page.goto(f"{page.url.split('#')[0]}#/environments/{tenant}/{name}")
    expect(page.get_by_role("heading", level=1, name=f"{tenant}/{name}")).to_be_visible()


def field_error(page: Page, field: str) -> Any:
    """The error shown next to a form field (`data-field` is the API's field path)."""
    return page.locator(f"[data-field='{field}'] .field-error")


def state_badge(page: Page) -> Any:
    return page.locator(".page-heading .badge")


# --- phase 1 ---


def test_sign_in_create_follow_preview_destroy_and_audit(page: Page, scripted: Service) -> None:
    page.goto(scripted.url + "/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("API key").fill("mdp_not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("That API key was not accepted")
    screenshot(page, "sign-in")

    page.get_by_label("API key").fill(ADMIN_KEY)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1, name="Environments")).to_be_visible()
    expect(page.get_by_text("No environments yet.")).to_be_visible()

    # The create form: the service's 422 shows next to the field it is about.
    open_create_form(page)
    page.get_by_label("Tenant", exact=True).fill("acme")
    page.get_by_label("Name", exact=True).fill("Dev_1")
    # The engine also says something that looks like markup: it must show as text.
    say = scripted.data_dir / "say.txt"
    say.write_text('<img src=x onerror="window.injected=1"> <b>not bold</b>')
    page.get_by_label("Tags").fill(
        f"script-resources=5\nscript-delay=0.5\nowner=ops\nscript-say-file={say}"
    )
    page.get_by_role("button", name="Create environment").click()
    expect(field_error(page, "name")).to_contain_text("must be 1-12 characters")
    expect(page.get_by_label("Name", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Name", exact=True)).to_be_focused()
    expect(field_error(page, "tenant")).to_be_hidden()

    page.get_by_label("Name", exact=True).fill("dev")
    page.get_by_label("Memory (MB)").fill("64")
    page.get_by_role("button", name="Create environment").click()
    expect(field_error(page, "config.memory_mb")).to_contain_text("greater than or equal to 128")
    expect(field_error(page, "name")).to_be_hidden()
    screenshot(page, "create-422", full_page=True)

    page.get_by_label("Memory (MB)").fill("1024")
    page.get_by_role("button", name="Create environment").click()

    # Live progress from the SSE stream, then READY.
    expect(page.get_by_role("heading", level=1, name="acme/dev")).to_be_visible()
    progress = page.locator(".operation-panel .progress-text")
    expect(progress).to_contain_text(re.compile(r"^[1-4] of 5 resources"))
    screenshot(page, "progress")
    expect(progress).to_contain_text("5 of 5 resources")
    expect(state_badge(page)).to_have_text("READY")
    expect(page.locator(".operation-panel")).to_contain_text("Changes: create 5")
    log = page.get_by_role("log", name="Event log")
    expect(log.locator("[data-type='resource.finished']")).to_have_count(5)
    expect(log.locator("li").last).to_contain_text("operation succeeded")
    expect(log.locator("[data-type='diagnostic']")).to_contain_text('<img src=x onerror="window.')
    expect(log.locator("img, b")).to_have_count(0)
    assert page.evaluate("window.injected") is None
    expect(page.get_by_role("status").first).to_contain_text("Create of acme/dev succeeded")
    expect(page.locator("dl.outputs")).to_contain_text("p-acme-dev:bucketName")
    screenshot(page, "environment", full_page=True)
    # Outputs are copyable.
    page.get_by_role("button", name="Copy bucketName").click()
    assert page.evaluate("navigator.clipboard.readText()") == "p-acme-dev:bucketName"

    # Preview, from the keyboard: focus follows to the operation it started, then the plan.
    page.get_by_role("button", name="Preview").press("Enter")
    expect(page.locator(".operation-panel h2")).to_contain_text("Preview operation")
    expect(page.locator(".operation-panel h2")).to_be_focused()
    expect(page.locator(".operation-panel")).to_contain_text("Plan: same 5")

    # Update the config: a 422 shows next to the field here too, then the update runs.
    page.get_by_role("button", name="Edit configuration").click()
    memory = page.get_by_label("Memory (MB)")
    expect(memory).to_have_value("1024")
    memory.fill("64")
    page.get_by_role("button", name="Save changes").click()
    expect(field_error(page, "config.memory_mb")).to_contain_text("greater than or equal to 128")
    memory.fill("2048")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator(".operation-panel h2")).to_contain_text("Update operation")
    expect(page.locator(".operation-panel")).to_contain_text("Changes: create 5")
    expect(page.locator("dl.pairs")).to_contain_text("2048")
    assert scripted.client.get("/environments/acme/dev").json()["config"]["memory_mb"] == 2048
    expect(page.get_by_role("button", name="Destroy…")).to_be_enabled()

    # The table, with its filters.
    page.get_by_role("link", name="Environments", exact=True).first.click()
    row = page.locator("tr[data-environment='acme/dev']")
    expect(row).to_contain_text("READY")
    expect(row).to_contain_text("update SUCCEEDED")
    page.get_by_label("State").select_option("FAILED")
    expect(page.get_by_text("No environments match these filters.")).to_be_visible()
    page.get_by_label("State").select_option("READY")
    expect(row).to_be_visible()
    screenshot(page, "environments")

    # Creating it again is a conflict, said plainly.
    open_create_form(page)
    page.get_by_label("Tenant", exact=True).fill("acme")
    page.get_by_label("Name", exact=True).fill("dev")
    page.get_by_role("button", name="Create environment").click()
    expect(page.locator(".form-summary")).to_contain_text(
        "conflict: environment acme/dev already exists (state READY)"
    )
    page.get_by_role("link", name="Environments", exact=True).first.click()

    # Destroy only after typing tenant/name.
    row.get_by_role("link", name="dev").click()
    destroy = page.get_by_role("button", name="Destroy…")
    destroy.click()
    dialog = page.get_by_role("dialog", name="Destroy acme/dev?")
    expect(dialog.get_by_label("Type acme/dev to confirm")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(destroy).to_be_focused()
    destroy.press("Enter")
    confirm = dialog.get_by_role("button", name="Destroy environment")
    expect(confirm).to_be_disabled()
    dialog.get_by_label("Type acme/dev to confirm").fill("acme/de")
    expect(confirm).to_be_disabled()
    dialog.get_by_label("Type acme/dev to confirm").fill("acme/dev")
    screenshot(page, "destroy-confirmation")
    confirm.click()
    expect(dialog).to_be_hidden()
    expect(page.locator(".operation-panel h2")).to_contain_text("Destroy operation")
    expect(state_badge(page)).to_have_text("DESTROYED")
    expect(page.get_by_text("This environment is destroyed.")).to_be_visible()
    assert scripted.client.get("/environments/acme/dev").json()["state"] == "DESTROYED"

    # The audit log: every change, and the refused sign-in.
    page.get_by_role("link", name="Audit log").click()
    table = page.get_by_role("table", name="Audit log")
    expect(table).to_contain_text("POST /environments")
    expect(table).to_contain_text("DELETE /environments/{tenant}/{name}")
    expect(table.locator("tr.audit-denied").first).to_contain_text("anonymous")
    screenshot(page, "audit")


def test_tenant_key_gets_admin_needed_and_a_revoked_key_signs_out(
    page: Page, scripted: Service
) -> None:
    created = scripted.client.post("/admin/api-keys", json={"scope": "tenant:globex"}).json()
    sign_in(page, scripted.url, created["key"])
    expect(page.locator("#key-prefix")).to_have_text(created["key"][:10] + "…")
    page.get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("heading", name="Admin key needed")).to_be_visible()
    screenshot(page, "audit-tenant-key")

    scripted.client.delete(f"/admin/api-keys/{created['id']}")
    page.get_by_role("link", name="Environments", exact=True).first.click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("the service rejected the API key")
    assert page.evaluate("sessionStorage.length") == 0


def test_live_progress_resumes_after_a_dropped_stream_and_cancels(
    page: Page, scripted: Service
) -> None:
    gate = scripted.data_dir / "resume-gate"
    operation_id = scripted.create("acme", "resume", resources="3", gate=str(gate))
    # Wait until the engine has done its resources and waits at the gate.
    deadline = time.monotonic() + 20
    while scripted.client.get(f"/operations/{operation_id}").json()["progress"]["done"] < 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    first_two = _first_events(scripted, operation_id, 2)

    streams: list[Request] = []

    def drop_the_first_stream(route: Route, request: Request) -> None:
        streams.append(request)
        if len(streams) == 1:
            # The connection ends after two events, the operation still running.
            route.fulfill(status=200, content_type="text/event-stream", body=first_two)
        else:
            route.continue_()

    page.route("**/operations/*/events", drop_the_first_stream)
    sign_in(page, scripted.url)
    open_environment(page, "acme", "resume")
    connection = page.locator(".operation-panel .connection")
    expect(connection).to_have_attribute("data-state", "reconnecting")
    expect(connection).to_contain_text("reconnecting in 1 s")
    expect(connection).to_have_text("Live")
    assert [request.headers.get("last-event-id") for request in streams] == [None, "2"]

    # The operation waits at its gate: cancel it. The flash may show the cancel's outcome before
    # an assertion polls it, so every text it shows is recorded.
    page.evaluate(
        """() => {
            const flash = document.getElementById("flash");
            window.flashTexts = [];
            new MutationObserver(() => window.flashTexts.push(flash.textContent))
                .observe(flash, {childList: true, subtree: true, characterData: true});
        }"""
    )
    page.get_by_role("button", name="Cancel operation").click()
    page.wait_for_function(
        "text => window.flashTexts.some(shown => shown.includes(text))",
        arg=f"Cancel requested for operation {operation_id}",
    )
    expect(page.locator(".operation-panel h2 .badge")).to_have_text("CANCELLED")
    expect(state_badge(page)).to_have_text("FAILED")
    expect(page.get_by_text("Last change failed: create cancelled")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel operation")).to_be_hidden()
    assert len(streams) == 2
    ids = page.locator(".event-log li").evaluate_all("items => items.map(i => i.dataset.id)")
    assert ids == [str(n) for n in range(1, len(ids) + 1)], ids
    expect(page.locator(".event-log [data-type='resource.finished']")).to_have_count(3)


def _first_events(service: Service, operation_id: str, count: int) -> str:
    """The raw text of an operation's first `count` events, read from the live stream."""
    text, seen = "", 0
    with service.client.stream("GET", f"/operations/{operation_id}/events") as response:
        for line in response.iter_lines():
            text += line + "\n"
            seen += line == ""
            if seen == count:
                return text
    raise AssertionError("the stream ended early")


# --- the files view ---


def test_extend_sets_an_expiry_shown_as_expires_in(page: Page, scripted: Service) -> None:
    created = scripted.client.post("/environments", json={"tenant": "acme", "name": "tmp"})
    assert created.status_code == 202, created.text
    last = created.json()["id"]
    sign_in(page, scripted.url)
    open_environment(page, "acme", "tmp")
    expect(page.locator("#expiry")).to_have_count(0)
    page.get_by_role("button", name="Extend…").click()
    page.get_by_label("Expire in (minutes from now)").fill("90")
    page.get_by_role("button", name="Set expiry").click()
    expect(page.locator("#expiry")).to_contain_text("expires in")
    shown = scripted.client.get("/environments/acme/tmp").json()
    assert shown["expiresAt"] is not None
    assert shown["lastOperation"]["id"] == last  # no operation for a new expiry
    page.get_by_role("button", name="Extend…").click()
    page.get_by_label("Expire in (minutes from now)").fill("0")
    page.get_by_role("button", name="Set expiry").click()
    # The browser refuses it before the API would (422): the form stays, marked invalid.
    expect(page.locator("#extend-minutes:invalid")).to_have_count(1)


def test_files_view_of_an_unknown_environment(page: Page, scripted: Service) -> None:
    sign_in(page, scripted.url)
    page.goto(scripted.url + "/#/environments/acme/nowhere/files")
    expect(page.get_by_text("Environment acme/nowhere was not found")).to_be_visible()


def test_served_page_is_locked_down(scripted: Service) -> None:
    response = httpx.get(scripted.url + "/")
    assert response.status_code == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    script = httpx.get(scripted.url + "/dashboard/js/main.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert "script-src 'self'" in script.headers["content-security-policy"]
    assert json.loads(httpx.get(scripted.url + "/environments").text)["error"] == "unauthorized"


# --- phase 2: the local engine, real files ---


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """The service as `make run` starts it (`python -m provisioner`, local engine), in a process
    of its own: the emulator's AWS state is process-wide, so a second local-engine service in
    this process (another module's, under xdist) would share buckets with it."""
    root = tmp_path_factory.mktemp("dashboard-local")
    port = free_port()
    variables = {
        "PROVISIONER_ENGINE": "local",
        "PROVISIONER_PORT": str(port),
        "PROVISIONER_LOCAL_AWS_PORT": str(free_port()),
        "PROVISIONER_DATA_DIR": str(root / "data"),
        "PROVISIONER_ADMIN_KEY": ADMIN_KEY,
        "PROVISIONER_HEARTBEAT_INTERVAL_S": "0.2",
        "PROVISIONER_HEARTBEAT_TIMEOUT_S": "2",
    }
    log = root / "service.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "provisioner"],
            env={**os.environ, **variables},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base_url, headers=auth(), timeout=30) as client:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, f"the service exited; see {log}"
                assert time.monotonic() < deadline, f"the service did not start; see {log}"
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            settings = Settings.model_validate(
                {k.removeprefix("PROVISIONER_").lower(): v for k, v in variables.items()}
            )
            yield RunningService(settings, base_url, client)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def test_real_files_complete_fail_retry_and_redrive(page: Page, local: RunningService) -> None:
    # Created through the form, followed live to READY: the real resources of the local engine.
    sign_in(page, local.base_url)
    open_create_form(page)
    page.get_by_label("Tenant", exact=True).fill("acme")
    page.get_by_label("Name", exact=True).fill("files")
    page.get_by_label("Tags").fill("owner=market-data-ops")
    page.get_by_role("button", name="Create environment").click()
    expect(state_badge(page)).to_have_text("READY", timeout=120_000)
    expect(page.locator("dl.outputs")).to_contain_text("awsEndpointUrl (local emulator)")
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "environment-local", full_page=True)

    environment = local.client.get("/environments/acme/files").json()
    good = local.upload(environment, "incoming/good.csv", trades_csv())
    bad = local.upload(environment, "incoming/bad.csv", b"wrong,header\n1,2\n")
    assert local.wait_for_file("acme", "files", good)["status"] == "COMPLETED"
    assert local.wait_for_file("acme", "files", bad)["status"] == "FAILED"
    local.dead_letter(environment, "staging/late.csv", trades_csv())

    # The environment page charts them: files per minute by final status, latency percentiles.
    charts = page.get_by_role("region", name="Files in the last hour")
    expect(charts.locator(".stats-summary")).to_contain_text(
        "1 completed, 1 failed", timeout=30_000
    )
    expect(charts.locator(".stats-summary")).to_contain_text(re.compile(r"p50 [\d.]+ s"))
    per_minute = charts.locator("figure[data-chart='Files per minute by final status']")
    expect(per_minute.locator("rect[data-series='COMPLETED']")).to_have_count(1)
    expect(per_minute.locator("rect[data-series='FAILED']")).to_have_count(1)
    latency = charts.locator("figure[data-chart='Upload to COMPLETED latency percentiles']")
    expect(latency.locator("path[data-series='p99'], circle")).not_to_have_count(0)
    expect(page.locator("#health h3 .badge")).to_have_text(re.compile(r"^(OK|ALARM|UNKNOWN)$"))
    expect(page.locator("#drift h3 .badge")).to_have_text(
        re.compile(r"^(IN_SYNC|DRIFTED|UNKNOWN)$")
    )
    screenshot(page, "environment-charts", full_page=True)

    page.get_by_role("link", name="Files", exact=True).click()
    counts = page.get_by_role("group", name="Files by status")
    expect(counts.locator("[data-status='COMPLETED'] .count-value")).to_have_text("1")
    expect(counts.locator("[data-status='FAILED'] .count-value")).to_have_text("1")
    latest = page.get_by_role("table", name="Latest files")
    latest.get_by_role("button", name="Details of incoming/good.csv").click()
    expect(page.get_by_role("table", name="Per symbol")).to_contain_text("BRK.B")

    failures = page.get_by_role("table", name="Failed files")
    expect(failures).to_contain_text("incoming/bad.csv")
    expect(failures).to_contain_text("validator")
    ingest = page.locator("li[data-queue='ingest']")
    expect(ingest).to_contain_text("1 message")
    ingest.get_by_role("button", name="Peek").click()
    expect(ingest.get_by_role("table")).to_contain_text("staging/late.csv")
    screenshot(page, "files-local", full_page=True)

    failures.get_by_role("button", name="Retry incoming/bad.csv").click()
    expect(page.locator("#flash")).to_contain_text("Retry of incoming/bad.csv queued: attempt 2")
    # The same object version fails again, now on its second attempt.
    expect(failures.locator(f"tr[data-file-id='{bad}'] td.num")).to_have_text("2")

    ingest.get_by_role("button", name="Redrive the ingest dead-letter queue").click()
    expect(page.locator("#flash")).to_contain_text("Moved 1 message from the ingest DLQ")
    expect(ingest).to_contain_text("0 messages")
    expect(counts.locator("[data-status='COMPLETED'] .count-value")).to_have_text("2")
