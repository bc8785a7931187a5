"""Memory of the service's process tree with N active local environments.

    python -m bench.fleet_memory [--environments 20] [--workers 0]

Starts the service as `make run` does (`python -m provisioner`, local engine, its own process),
creates N environments through the HTTP API, puts one small trade file through each (so every
environment's functions have run), and measures the service's process tree with psutil: the
number of processes, their RSS and PSS (proportional set size: shared pages split between
the processes sharing them, so the sum is what the tree really occupies), per kind of process,
before any environment and with N. "Per active environment" is (PSS with N − PSS with none) / N.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import psutil

from handlers.core.ids import file_id

ADMIN_KEY = "mdp_bench-admin-key-0123456789abcdefghijkl"
CSV = (
    b"timestamp,symbol,price,size\n"
    b"2026-11-27T14:30:00Z,AAPL,190.10,100\n"
    b"2026-11-27T14:30:01Z,MSFT,410.00,50\n"
    b"2026-11-27T14:30:02Z,AAPL,190.30,25\n"
)
MB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Tree:
    processes: int
    rss: int
    pss: int
    by_kind: dict[str, tuple[int, int, int]]  # kind → (count, rss, pss)


def kind_of(process: psutil.Process, service_pid: int) -> str:
    if process.pid == service_pid:
        return "service (API + emulator)"
    command = " ".join(process.cmdline())
    if "forkserver" in command and process.ppid() == service_pid:
        return "forkserver"
    if "resource_tracker" in command:
        return "resource tracker"
    return "forkserver children (runtime / operation workers)"


def measure(service_pid: int) -> Tree:
    root = psutil.Process(service_pid)
    by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    processes = rss = pss = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            info = process.memory_full_info()
            kind = kind_of(process, service_pid)
        except psutil.Error:
            continue
        processes += 1
        rss += info.rss
        pss += info.pss
        figures = by_kind[kind]
        figures[0] += 1
        figures[1] += info.rss
        figures[2] += info.pss
    return Tree(
        processes, rss, pss, {kind: (f[0], f[1], f[2]) for kind, f in sorted(by_kind.items())}
    )


def show(title: str, tree: Tree) -> None:
    print(
        f"{title}: {tree.processes} processes, RSS {tree.rss / MB:.0f} MB, "
        f"PSS {tree.pss / MB:.0f} MB"
    )
    for kind, (count, rss, pss) in tree.by_kind.items():
        print(f"    {kind:<52}{count:>4} × · RSS {rss / MB:>6.0f} MB · PSS {pss / MB:>6.0f} MB")


def get(client: httpx.Client, path: str) -> httpx.Response:
    """GET, retried on a dropped connection (a loaded machine resets idle keep-alives)."""
    for attempt in range(5):
        try:
            return client.get(path)
        except httpx.TransportError:
            if attempt == 4:
                raise
            time.sleep(1)
    raise AssertionError("unreachable")


def wait_operation(client: httpx.Client, operation_id: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        body: dict[str, Any] = get(client, f"/operations/{operation_id}").json()
        if body["state"] not in ("QUEUED", "RUNNING"):
            return body
        if time.monotonic() > deadline:
            raise TimeoutError(f"operation {operation_id} still {body['state']}")
        time.sleep(0.5)


def one_environment(client: httpx.Client, index: int) -> None:
    """Create environment `index`, put one file through it, wait for COMPLETED."""
    tenant, name = f"fleet{index}", "mem"
    response = client.post("/environments", json={"tenant": tenant, "name": name})
    response.raise_for_status()
    finished = wait_operation(client, response.json()["id"], 1800)
    if finished["state"] != "SUCCEEDED":
        raise RuntimeError(f"{tenant}/{name}: {finished}")
    environment = get(client, f"/environments/{tenant}/{name}").json()
    bucket = environment["outputs"]["bucketName"]
    s3 = boto3.client(
        "s3",
        endpoint_url=environment["awsEndpointUrl"],
        region_name=environment["region"],
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    version = s3.put_object(Bucket=bucket, Key="incoming/one.csv", Body=CSV)["VersionId"]
    identifier = file_id(bucket, "incoming/one.csv", version)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        item = get(client, f"/environments/{tenant}/{name}/files/{identifier}")
        if item.status_code == 200 and item.json()["status"] in ("COMPLETED", "FAILED"):
            if item.json()["status"] != "COMPLETED":
                raise RuntimeError(f"{tenant}/{name}: {item.json()}")
            return
        time.sleep(0.5)
    raise TimeoutError(f"{tenant}/{name}: the file did not complete")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--environments", type=int, default=20)
    parser.add_argument("--workers", type=int, default=0, help="runtime workers (0: CPU cores)")
    parser.add_argument("--parallel", type=int, default=2, help="environments set up at once")
    parser.add_argument(
        "--step", type=int, default=0, help="also measure after every STEP environments"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        port = free_port()
        environment = {
            **os.environ,
            "PROVISIONER_DATA_DIR": str(Path(tmp) / "data"),
            "PROVISIONER_ADMIN_KEY": ADMIN_KEY,
            "PROVISIONER_ENGINE": "local",
            "PROVISIONER_PORT": str(port),
            "PROVISIONER_LOCAL_AWS_PORT": str(free_port()),
            "PROVISIONER_LOCAL_RUNTIME_WORKERS": str(args.workers),
            "PROVISIONER_MAX_CONCURRENT_OPERATIONS": str(args.parallel),
            "PROVISIONER_LOG_LEVEL": "WARNING",
        }
        log_path = Path(tmp) / "service.log"
        with log_path.open("wb") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "provisioner"], env=environment, stdout=log, stderr=log
            )
        try:
            run(server.pid, f"http://127.0.0.1:{port}", args)
        except BaseException:
            print("the service's last lines:", *log_path.read_text().splitlines()[-30:], sep="\n")
            raise
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(10)


def run(service_pid: int, base_url: str, args: argparse.Namespace) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
        deadline = time.monotonic() + 120
        while True:
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the service did not start")
            time.sleep(0.2)
        time.sleep(2)
        empty = measure(service_pid)
        show("no environment", empty)
        sys.stdout.flush()
        started = time.monotonic()
        step = args.step or args.environments
        done = 0
        with ThreadPoolExecutor(max_workers=args.parallel) as pool:
            while done < args.environments:
                batch = range(done, min(done + step, args.environments))
                list(pool.map(lambda index: one_environment(client, index), batch))
                done = batch.stop
                print(
                    f"\n{done} environments created and one file COMPLETED through each "
                    f"in {time.monotonic() - started:.0f} s"
                )
                time.sleep(2)
                full = measure(service_pid)
                show(f"{done} active environments", full)
                print(
                    f"per active environment: PSS {(full.pss - empty.pss) / done / MB:.1f} MB "
                    f"(RSS {(full.rss - empty.rss) / done / MB:.1f} MB) beyond the empty "
                    f"service; whole tree {full.pss / MB:.0f} MB PSS / {full.rss / MB:.0f} MB "
                    f"RSS, {full.processes} processes",
                    flush=True,
                )


if __name__ == "__main__":
    main()
