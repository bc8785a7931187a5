"""Latency of `GET /environments` (1,000 environments in the registry) under 50 concurrent
clients, side by side with a bare FastAPI endpoint serving a page of the same size.

    python -m bench.api [--environments 1000] [--clients 50] [--requests 4000]

Both servers run as single uvicorn processes on loopback, started the same way; the load
comes from this process. Besides latency, each server's CPU time per request (user + system,
all its threads) is reported: on a shared machine it is the steadier figure.

A server is measured once its start-up work has settled (below 5% of a core for a second).
The provisioner's first health sample starts with it and reads the data plane of every READY
environment; the seeded ones have none behind them, so the sample is a minute of failed AWS
look-ups (~0.5 core) that would otherwise be counted as the requests' CPU. Its later samples
are kept out of the run by `PROVISIONER_HEALTH_INTERVAL_S`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ctypes
import ctypes.util
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psutil

from provisioner.auth.service import ensure_bootstrap_admin_key
from provisioner.config import Settings
from provisioner.db import Database, utcnow
from provisioner.environments.models import EnvironmentRow, EnvironmentState
from provisioner.operations.models import OperationRow, OperationState
from stacks.config import PipelineConfig
from stacks.spec import STACK_OUTPUTS

ADMIN_KEY = "mdp_bench-admin-key-0123456789abcdefghijkl"
PAGE_SIZE = 50


def seed_registry(settings: Settings, count: int) -> None:
    database = Database(settings.resolved_database_url)
    database.create_schema()
    ensure_bootstrap_admin_key(settings, database)
    with database.session() as session:
        for index in range(count):
            tenant, name = f"tenant{index % 40}", f"env{index}"
            config = PipelineConfig(tenant=tenant, environment=name)
            environment = EnvironmentRow(
                id=str(uuid.uuid4()),
                tenant=tenant,
                name=name,
                state=EnvironmentState.READY,
                engine="pulumi",
                region=config.region,
                config=config.settings().model_dump(mode="json"),
                tags={"CostCenter": str(index)},
                outputs={output: f"p-{tenant}-{name}-{output}" for output in STACK_OUTPUTS},
                created_at=utcnow(),
                updated_at=utcnow(),
            )
            operation = OperationRow(
                id=str(uuid.uuid4()),
                environment_id=environment.id,
                tenant=tenant,
                name=name,
                kind="create",
                state=OperationState.SUCCEEDED,
                request=config.model_dump(mode="json"),
                recover=False,
                requested_by="bootstrap-admin",
                result={"changes": {"create": 40}},
                progress_done=40,
                progress_total=40,
                cancel_requested=False,
                timeout_s=3600,
                created_at=utcnow(),
                started_at=utcnow(),
                finished_at=utcnow(),
            )
            environment.last_operation_id = operation.id
            session.add(environment)
            session.add(operation)
    database.dispose()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM when this benchmark dies, however it dies."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_server(factory: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--no-access-log"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120  # a loaded machine starts a process slowly
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code in (200, 404):
                return process, base
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            process.wait()
            raise SystemExit(f"{factory} did not start")
        time.sleep(0.1)


async def load(
    base: str, clients: int, requests: int, environments: int
) -> tuple[list[float], float, collections.Counter[str]]:
    """`clients` concurrent clients share `requests` requests; returns latencies (ms), the
    elapsed time and the failed requests by kind (an HTTP status, an exception's name)."""
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    remaining = requests
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    # A long timeout: on a loaded machine a slow answer is a latency to count, not a request
    # to drop from the figures.
    async with httpx.AsyncClient(
        base_url=base, headers=headers, limits=limits, timeout=60
    ) as client:
        # Warm-up: open every connection once, and ask for every page the run asks for (with
        # at least as many clients as pages), as a serving replica has: the provisioner renders
        # an environment's JSON once per version of it, and the first rendering of each is a
        # start-up cost, like the settling above, not the listing's steady state.
        for index in range(clients):
            offset = (index * PAGE_SIZE) % environments
            page = await client.get(f"/environments?limit={PAGE_SIZE}&offset={offset}")
            page.raise_for_status()

        async def worker() -> None:
            nonlocal remaining, errors
            while remaining > 0:
                remaining -= 1
                offset = (remaining * PAGE_SIZE) % environments
                started = time.perf_counter()
                try:
                    response = await client.get(f"/environments?limit={PAGE_SIZE}&offset={offset}")
                except httpx.TransportError as exc:
                    errors[type(exc).__name__] += 1
                    continue
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    errors[str(response.status_code)] += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return latencies, elapsed, errors


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--environments", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=4000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        data = Path(tmp)
        env = {
            "PROVISIONER_DATA_DIR": str(data),
            "PROVISIONER_ADMIN_KEY": ADMIN_KEY,
            "PROVISIONER_ENGINE": "pulumi",  # nothing runs; no emulator to start
            "PROVISIONER_LOG_LEVEL": "WARNING",
            # The first sample runs at start-up (waited out below); no second one meanwhile.
            "PROVISIONER_HEALTH_INTERVAL_S": "3600",
        }
        settings = Settings.model_validate(
            {"data_dir": data, "admin_key": ADMIN_KEY, "engine": "pulumi"}
        )
        seed_registry(settings, args.environments)
        ours, ours_base = start_server("bench.api_servers:provisioner_app", env)
        try:
            page = httpx.get(
                f"{ours_base}/environments?limit={PAGE_SIZE}",
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            ).json()
            assert page["total"] == args.environments, page["total"]
            page_file = data / "page.json"
            page_file.write_text(json.dumps(page))
            bare, bare_base = start_server(
                "bench.api_servers:bare_app", {"BENCH_BARE_PAGE": str(page_file)}
            )
            try:
                results = {}
                cpu_ms = {}
                servers = (("bare FastAPI", bare, bare_base), ("provisioner", ours, ours_base))
                for label, server, base in servers:
                    settled_after = wait_until_idle(server.pid)
                    print(f"{label}: settled after {settled_after:.0f} s", file=sys.stderr)
                    before = _cpu_seconds(server.pid)
                    run = load(base, args.clients, args.requests, args.environments)
                    results[label] = asyncio.run(run)
                    # warm-up requests (one per client) included
                    served = args.requests + args.clients
                    cpu_ms[label] = (_cpu_seconds(server.pid) - before) * 1000 / served
            finally:
                bare.terminate()
                bare.wait()
        finally:
            ours.terminate()
            ours.wait()

    print(
        f"GET /environments?limit={PAGE_SIZE}: {args.environments} environments, "
        f"{args.clients} concurrent clients, {args.requests} requests per server; "
        f"page {len(json.dumps(page)) / 1024:.1f} KiB"
    )
    print(f"{'server':<14}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}{'errors':>8}{'cpu ms/req':>12}")
    figures = {}
    for label, (latencies, elapsed, errors) in results.items():
        p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
        figures[label] = (p50, p99)
        rate = len(latencies) / elapsed
        failed = sum(errors.values())
        print(f"{label:<14}{p50:>10.1f}{p99:>10.1f}{rate:>10.0f}{failed:>8}{cpu_ms[label]:>12.2f}")
        if failed:
            print(f"{'':<14}errors: {dict(errors)}")
    (bare_p50, bare_p99), (our_p50, our_p99) = figures["bare FastAPI"], figures["provisioner"]
    print(
        f"ratio provisioner / bare: p50 {our_p50 / bare_p50:.2f}x, p99 {our_p99 / bare_p99:.2f}x, "
        f"cpu per request {cpu_ms['provisioner'] / cpu_ms['bare FastAPI']:.2f}x"
    )


IDLE_CPU_SHARE = 0.05


def wait_until_idle(pid: int, timeout_s: float = 900) -> float:
    """Waits until the process has used less than `IDLE_CPU_SHARE` of a core over a second
    (its start-up work done); returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        before = _cpu_seconds(pid)
        time.sleep(1)
        if _cpu_seconds(pid) - before < IDLE_CPU_SHARE:
            return time.monotonic() - started
    raise SystemExit(f"server {pid} was still busy after {timeout_s:.0f} s")


def _cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


if __name__ == "__main__":
    main()
