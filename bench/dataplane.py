"""Throughput and latency of the data plane through the local engine.

    python -m bench.dataplane [--files 200] [--size-mb 1] [--seed 7] [--concurrency 8] [--poll-s 30]

Starts the service with the local engine (in this process, as `make run` would in its own),
creates one environment through the HTTP API, uploads N seeded trade files of about 1 MB each
with boto3, and waits until every one is COMPLETED. Prints files/s, upload → COMPLETED latency
(p50/p95), where the time went (inside the handlers versus the emulator and orchestration), the
CPU seconds per file of the service, the emulator and the runtime workers, and the emulator's
requests per file by service and action (`bench.emulator_meter`).

Completion is seen by listing the environment's files (as a user would), once the aggregator
has run for every file and otherwise every `--poll-s` seconds (a file may fail earlier). A
listing scans the whole status table, so listing every half second, as the benchmark once did,
made it a sizeable load on the machine it measures. Throughput and latency come from the
items' own `updatedAt`, so when the listing happens does not change them.
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import httpx
import psutil
import uvicorn
from pydantic import SecretStr

from bench.emulator_meter import EmulatorMeter
from handlers.core.ids import file_id
from provisioner.app import create_app
from provisioner.config import Settings
from provisioner.engines.local.host import LocalHost
from provisioner.state import AppState

ADMIN_KEY = "mdp_bench-admin-key-0123456789abcdefghijkl"
SYMBOLS = ["AAPL", "MSFT", "AMZN", "GOOG", "META", "NVDA", "TSLA", "BRK.B", "JPM", "V"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def trades_file(rng: random.Random, size_bytes: int) -> bytes:
    lines = ["timestamp,symbol,price,size"]
    total = len(lines[0]) + 1
    second = rng.randrange(0, 6 * 3600)
    while total < size_bytes:
        second += rng.randrange(0, 3)
        hours, rest = divmod(34200 + second, 3600)
        millis = rng.randrange(1000)
        stamp = f"2026-11-27T{hours % 24:02d}:{rest // 60:02d}:{rest % 60:02d}.{millis:03d}Z"
        line = f"{stamp},{rng.choice(SYMBOLS)},{rng.uniform(10, 900):.4f},{rng.randrange(1, 5000)}"
        lines.append(line)
        total += len(line) + 1
    return ("\n".join(lines) + "\n").encode()


def parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--size-mb", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--poll-s", type=float, default=30.0, help="seconds between two listings of the files"
    )
    parser.add_argument(
        "--workers", type=int, default=0, help="shared runtime worker processes (0: CPU cores)"
    )
    args = parser.parse_args()

    rng = random.Random(args.seed)
    print(f"generating {args.files} files of ~{args.size_mb} MB (seed {args.seed})…")
    bodies = [trades_file(rng, int(args.size_mb * 1024 * 1024)) for _ in range(args.files)]

    with tempfile.TemporaryDirectory(prefix="bench-dataplane-") as tmp:
        port = free_port()
        settings = Settings.model_validate(
            {
                "data_dir": Path(tmp),
                "admin_key": SecretStr(ADMIN_KEY),
                "engine": "local",
                "port": port,
                "local_aws_port": free_port(),
                "local_runtime_workers": args.workers,
                "log_level": "WARNING",
            }
        )
        meter = EmulatorMeter()
        meter.install()
        app = create_app(settings)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        try:
            run(app.state.services, f"http://127.0.0.1:{port}", bodies, args, meter)
        finally:
            meter.uninstall()
            server.should_exit = True
            thread.join(60)


def runtime_workers(service: psutil.Process) -> list[psutil.Process]:
    """The forkserver's children: once the environment exists (its create operation's worker
    gone), those are the runtime workers."""
    found = []
    for child in service.children():
        try:
            if "forkserver" in " ".join(child.cmdline()):
                found.extend(child.children())
        except psutil.Error:
            continue
    return found


def cpu_seconds(processes: list[psutil.Process]) -> dict[int, float]:
    figures: dict[int, float] = {}
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        figures[process.pid] = times.user + times.system
    return figures


def run(
    services: AppState,
    base: str,
    bodies: list[bytes],
    args: argparse.Namespace,
    meter: EmulatorMeter,
) -> None:
    client = httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=60
    )
    operation = client.post("/environments", json={"tenant": "bench", "name": "dp"}).json()
    while client.get(f"/operations/{operation['id']}").json()["state"] in ("QUEUED", "RUNNING"):
        time.sleep(0.1)
    environment = client.get("/environments/bench/dp").json()
    assert environment["state"] == "READY", environment
    bucket = environment["outputs"]["bucketName"]
    s3 = boto3.client(
        "s3",
        endpoint_url=environment["awsEndpointUrl"],
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    host = services.host
    assert isinstance(host, LocalHost)
    before = host.invocation_stats()
    service_process = psutil.Process()
    service_cpu_before = cpu_seconds([service_process])[service_process.pid]
    requests_before, emulator_cpu_before = meter.snapshot()
    workers_cpu_before = cpu_seconds(runtime_workers(service_process))
    client_cpu = [0.0]  # this benchmark's own uploads and polling, in the service's process
    client_lock = threading.Lock()

    uploaded: dict[str, float] = {}

    def upload(index: int) -> None:
        cpu = time.thread_time()
        key = f"incoming/bench-{index:04d}.csv"
        version = s3.put_object(Bucket=bucket, Key=key, Body=bodies[index])["VersionId"]
        uploaded[file_id(bucket, key, version)] = time.time()
        with client_lock:
            client_cpu[0] += time.thread_time() - cpu

    started = time.time()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        list(pool.map(upload, range(len(bodies))))
    upload_seconds = time.time() - started

    done: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 60 + 5 * len(bodies)
    polls = 0
    aggregator = "p-bench-dp-aggregator"

    def aggregated() -> int:
        """Aggregator invocations of this run: free to read (the dispatcher's counters)."""
        figures, base_figures = host.invocation_stats().get(aggregator), before.get(aggregator)
        return (figures.invocations if figures else 0) - (
            base_figures.invocations if base_figures else 0
        )

    listed_at = float("-inf")
    while len(done) < len(uploaded) and time.monotonic() < deadline:
        # List every `--poll-s` (a file can also fail), and every 2 s once every file may be done.
        interval = 2.0 if aggregated() >= len(uploaded) else args.poll_s
        if time.monotonic() - listed_at >= interval:
            cpu = time.thread_time()
            page = client.get("/environments/bench/dp/files", params={"limit": 500}).json()
            listed_at = time.monotonic()
            polls += 1
            for item in page["items"]:
                if item["status"] in ("COMPLETED", "FAILED"):
                    done[item["fileId"]] = item
            client_cpu[0] += time.thread_time() - cpu
        time.sleep(0.5)
    finished = time.time()
    after = host.invocation_stats()
    service_cpu = cpu_seconds([service_process])[service_process.pid] - service_cpu_before
    requests_after, emulator_cpu_after = meter.snapshot()
    emulator_cpu = emulator_cpu_after - emulator_cpu_before
    workers_after = cpu_seconds(runtime_workers(service_process))
    workers_cpu = sum(
        seconds - workers_cpu_before.get(pid, 0.0) for pid, seconds in workers_after.items()
    )

    completed = [item for item in done.values() if item["status"] == "COMPLETED"]
    latencies = sorted(
        parse_time(item["updatedAt"]) - uploaded[item["fileId"]] for item in completed
    )
    last = max(parse_time(item["updatedAt"]) for item in completed)
    total_mb = sum(len(body) for body in bodies) / 1e6
    elapsed = last - started
    print(
        f"\n{len(completed)}/{len(bodies)} files COMPLETED, {len(done) - len(completed)} FAILED, "
        f"{len(uploaded) - len(done)} unfinished; {total_mb:.0f} MB; "
        f"uploads took {upload_seconds:.1f} s"
    )
    print(f"throughput: {len(completed) / elapsed:.2f} files/s ({total_mb / elapsed:.1f} MB/s)")
    quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
    print(
        f"upload → COMPLETED latency: p50 {quantiles[49]:.2f} s, p95 {quantiles[94]:.2f} s, "
        f"max {latencies[-1]:.2f} s"
    )

    print("\nper function (this run):")
    print(f"{'function':<26}{'calls':>7}{'handler s':>11}{'dispatch s':>12}{'ms/call':>9}")
    handler_total = dispatch_total = 0.0
    for name, figures in sorted(after.items()):
        base_figures = before.get(name)
        calls = figures.invocations - (base_figures.invocations if base_figures else 0)
        handler = figures.handler_seconds - (base_figures.handler_seconds if base_figures else 0)
        dispatch = figures.dispatch_seconds - (base_figures.dispatch_seconds if base_figures else 0)
        handler_total += handler
        dispatch_total += dispatch
        short = name.removeprefix("p-bench-dp-")
        per_call = 1000 * handler / max(calls, 1)
        print(f"{short:<26}{calls:>7}{handler:>11.1f}{dispatch:>12.1f}{per_call:>9.0f}")
    latency_total = sum(latencies)
    print(
        f"\nper file: {latency_total / len(latencies):.2f} s upload → COMPLETED, of which "
        f"{handler_total / len(latencies):.2f} s in handler code "
        f"({100 * handler_total / latency_total:.0f} %), "
        f"{(dispatch_total - handler_total) / len(latencies):.2f} s in the local runtime's "
        f"dispatch, the rest in the emulator and orchestration (queueing, Step Functions, "
        f"EventBridge→SQS, status writes)"
    )
    workers = host.workers.size if hasattr(host, "workers") else args.workers
    busy = 100 * handler_total / (elapsed * workers)
    print(
        f"elapsed {finished - started:.1f} s; the {workers} runtime workers were busy in "
        f"handlers {busy:.0f} % of the time"
    )

    files = max(1, len(completed))
    own = service_cpu - emulator_cpu - client_cpu[0]
    print(
        f"\nCPU seconds per file: service {own / files:.3f} (API, pollers, dispatch), "
        f"emulator {emulator_cpu / files:.3f} (moto's requests and Step Functions), "
        f"runtime workers {workers_cpu / files:.3f} (handlers); "
        f"total {(own + emulator_cpu + workers_cpu) / files:.3f}. "
        f"(The benchmark's own uploads and polling, {client_cpu[0]:.1f} s, are left out.)"
    )
    requests = requests_after - requests_before
    print(
        f"\nemulator requests per file: {sum(requests.values()) / files:.1f} "
        f"(incl. the benchmark's {polls} status polls and {len(bodies)} uploads)"
    )
    for operation, count in sorted(requests.items(), key=lambda pair: -pair[1]):
        print(f"    {operation:<40}{count:>7}{count / files:>8.2f}/file")


if __name__ == "__main__":
    main()
