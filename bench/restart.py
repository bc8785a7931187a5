"""A restart of the service with N local environments: the snapshot's size and times.

    python -m bench.restart [--environments 20] [--files 3] [--kb 64] [--logs DIR]

Starts the service as `make run` does (its own process, local engine, JSON logs), creates N
environments, puts `--files` trade files of about `--kb` KB through each, waits for every one
to be COMPLETED, then stops it with SIGTERM and starts it again on the same data dir. Reports
the last snapshot's size (and its payload files'), how long it held requests and took in all
(the service's own `emulator.snapshot.saved` line; also the median and maximum of every
snapshot taken while filling), how long the uploads through the published endpoint took to be
answered (durable), the SIGTERM-to-exit time, the restore time
(`emulator.snapshot.restored`), the start-to-every-environment-READY time, and checks that
every file is still COMPLETED with attempt 1. `--logs` keeps both services' JSON logs there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import httpx

from bench.fleet_memory import ADMIN_KEY, free_port, wait_operation
from handlers.core.ids import file_id

MB = 1024 * 1024


def trades(kb: int, seed: int) -> bytes:
    lines = ["timestamp,symbol,price,size"]
    row = 0
    while sum(len(line) + 1 for line in lines) < kb * 1024:
        second = (seed * 7 + row) % 3600
        stamp = f"2026-11-27T14:{second // 60:02d}:{second % 60:02d}Z"
        lines.append(f"{stamp},SYM{row % 9},1{row % 97}.25,{row % 50 + 1}")
        row += 1
    return ("\n".join(lines) + "\n").encode()


class Service:
    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.log = data_dir.parent / f"service-{self.port}.log"
        environment = {
            **os.environ,
            "PROVISIONER_DATA_DIR": str(data_dir),
            "PROVISIONER_ADMIN_KEY": ADMIN_KEY,
            "PROVISIONER_ENGINE": "local",
            "PROVISIONER_PORT": str(self.port),
            "PROVISIONER_LOCAL_AWS_PORT": str(free_port()),
            "PROVISIONER_MAX_CONCURRENT_OPERATIONS": "2",
            "PROVISIONER_LOG_LEVEL": "INFO",
            "PROVISIONER_LOG_JSON": "true",
        }
        self.started = time.monotonic()
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "provisioner"], env=environment, stdout=output, stderr=output
            )
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}",
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            timeout=60,
        )
        deadline = time.monotonic() + 300
        while True:
            try:
                if self.client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"the service did not start; see {self.log}")
            time.sleep(0.1)
        self.ready_s = time.monotonic() - self.started

    def stop(self) -> float:
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(300)
        self.client.close()
        return time.monotonic() - started

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("event") == name:
                found.append(record)
        return found


def fill(
    service: Service, index: int, files: int, kb: int, put_s: list[float]
) -> list[tuple[str, str]]:
    tenant, name = f"fleet{index}", "keep"
    response = service.client.post("/environments", json={"tenant": tenant, "name": name})
    response.raise_for_status()
    finished = wait_operation(service.client, response.json()["id"], 1800)
    if finished["state"] != "SUCCEEDED":
        raise RuntimeError(f"{tenant}/{name}: {finished}")
    environment = service.client.get(f"/environments/{tenant}/{name}").json()
    bucket = environment["outputs"]["bucketName"]
    s3 = boto3.client(
        "s3",
        endpoint_url=environment["awsEndpointUrl"],
        region_name=environment["region"],
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    uploaded = []
    for number in range(files):
        key = f"incoming/f{number}.csv"
        body = trades(kb, index * 100 + number)
        started = time.perf_counter()
        version = s3.put_object(Bucket=bucket, Key=key, Body=body)
        put_s.append(time.perf_counter() - started)
        uploaded.append((f"{tenant}/{name}", file_id(bucket, key, version["VersionId"])))
    for environment_path, identifier in uploaded:
        deadline = time.monotonic() + 1800
        while True:
            item = service.client.get(f"/environments/{environment_path}/files/{identifier}")
            if item.status_code == 200 and item.json()["status"] in ("COMPLETED", "FAILED"):
                if item.json()["status"] != "COMPLETED":
                    raise RuntimeError(f"{environment_path}: {item.json()}")
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{environment_path}: {identifier} did not complete")
            time.sleep(0.5)
    return uploaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--environments", type=int, default=20)
    parser.add_argument("--files", type=int, default=3)
    parser.add_argument("--kb", type=int, default=64)
    parser.add_argument("--logs", type=Path, help="copy the services' logs to this directory")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-restart-") as tmp:
        data_dir = Path(tmp) / "data"
        first = Service(data_dir)
        put_s: list[float] = []
        with ThreadPoolExecutor(max_workers=2) as pool:
            batches = pool.map(
                lambda index: fill(first, index, args.files, args.kb, put_s),
                range(args.environments),
            )
            uploaded = [entry for batch in batches for entry in batch]
        during = first.events("emulator.snapshot.saved")
        stop_s = first.stop()
        saved = first.events("emulator.snapshot.saved")[-1]
        size = (data_dir / "emulator" / "snapshot.bin").stat().st_size
        blobs = data_dir / "emulator" / "blobs"
        blob_bytes = sum(p.stat().st_size for p in blobs.iterdir()) if blobs.is_dir() else 0
        pauses = sorted(float(event["pause_ms"]) for event in during)
        totals = sorted(float(event["total_ms"]) for event in during)
        puts = sorted(put_s)
        print(
            f"{args.environments} environments, {len(uploaded)} files of ~{args.kb} KB COMPLETED\n"
            f"last snapshot: {size / MB:.1f} MB (+ {blob_bytes / MB:.1f} MB of payload files), "
            f"requests held {saved['pause_ms']} ms, written in {saved['total_ms']} ms; "
            f"SIGTERM to exit {stop_s:.1f} s\n"
            f"{len(during)} snapshots while filling: requests held p50 "
            f"{statistics.median(pauses or [0.0]):.1f} ms / max {max(pauses or [0.0]):.1f} ms, "
            f"total p50 {statistics.median(totals or [0.0]):.1f} ms / "
            f"max {max(totals or [0.0]):.1f} ms\n"
            f"uploads through the published endpoint answered in p50 "
            f"{statistics.median(puts) * 1000:.0f} ms, max {puts[-1] * 1000:.0f} ms"
        )

        second = Service(data_dir)
        restored = second.events("emulator.snapshot.restored")[-1]
        names = {path for path, _ in uploaded}
        deadline = time.monotonic() + 300
        while any(
            second.client.get(f"/environments/{path}").json()["state"] != "READY" for path in names
        ):
            if time.monotonic() > deadline:
                raise TimeoutError("not every environment is READY again")
            time.sleep(0.2)
        all_ready_s = time.monotonic() - second.started
        wrong = [
            (path, identifier)
            for path, identifier in uploaded
            if (item := second.client.get(f"/environments/{path}/files/{identifier}").json())[
                "status"
            ]
            != "COMPLETED"
            or item["attempt"] != 1
        ]
        print(
            f"restart: snapshot restored in {restored['seconds']} s; service healthy after "
            f"{second.ready_s:.1f} s, every environment READY after {all_ready_s:.1f} s; "
            f"files not COMPLETED with attempt 1 after the restart: {len(wrong)}"
        )
        second.stop()
        if args.logs is not None:
            args.logs.mkdir(parents=True, exist_ok=True)
            for number, service in enumerate((first, second), start=1):
                shutil.copyfile(service.log, args.logs / f"service-{number}.log")


if __name__ == "__main__":
    main()
