"""How close a rollout comes to its concurrency bound, on the local engine.

    python -m bench.rollout [--environments 50] [--bounds 1,2,4] [--canary 1] [--verify]

Starts the service with the local engine (in this process), publishes template `gold@1` and
creates N environments from it through the HTTP API. Then, for each bound k, publishes the next
version of `gold` (a new `memory_mb`) and runs a rollout of every outdated `gold` environment
to it with `maxConcurrent: k`, and prints, from the operations' own timestamps:

- wall: the rollout's start to its last target's end;
- ideal: the sum of the targets' operation times ÷ k (the issue's figure), and the same with
  the canary wave alone first (what a rollout with a canary can reach at best);
- overhead per target: the slot time each target spends outside its operation,
  (wall − ideal with canary) × k ÷ N; and the scheduler's own reaction, the mean time from a
  target's operation ending to the next target's operation being queued in that slot, beside
  the runner's pickup (queued → started).

The service's global operation limit is raised to the largest bound, so k is the rollout's
bound, not the runner's.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from pydantic import SecretStr

from bench.dataplane import ADMIN_KEY, free_port
from provisioner.app import create_app
from provisioner.config import Settings

TENANT = "bench"
FINAL_ROLLOUT_STATES = ("SUCCEEDED", "HALTED", "CANCELLED")


def parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--environments", type=int, default=50)
    parser.add_argument("--bounds", default="1,2,4", help="maxConcurrent values, in order")
    parser.add_argument("--canary", type=int, default=1)
    parser.add_argument("--verify", action="store_true", help="canary files after each update")
    parser.add_argument("--workers", type=int, default=1, help="runtime processes per environment")
    args = parser.parse_args()
    bounds = [int(value) for value in args.bounds.split(",")]

    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as tmp:
        port = free_port()
        settings = Settings.model_validate(
            {
                "data_dir": Path(tmp),
                "admin_key": SecretStr(ADMIN_KEY),
                "engine": "local",
                "port": port,
                "local_aws_port": free_port(),
                "local_workers_per_environment": args.workers,
                "max_concurrent_operations": max(bounds),
                "log_level": "WARNING",
            }
        )
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None)
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        try:
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                timeout=60,
            ) as client:
                run(client, args.environments, bounds, args)
        finally:
            server.should_exit = True
            thread.join(120)


def wait_operation(client: httpx.Client, operation_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = client.get(f"/operations/{operation_id}").json()
        if body["state"] not in ("QUEUED", "RUNNING"):
            return body
        if time.monotonic() > deadline:
            raise SystemExit(f"operation {operation_id} still {body['state']} after {timeout}s")
        time.sleep(0.25)


def run(client: httpx.Client, count: int, bounds: list[int], args: argparse.Namespace) -> None:
    names = [f"env{index:03d}" for index in range(count)]
    published = client.post("/admin/templates", json={"name": "gold", "config": {"memory_mb": 512}})
    assert published.status_code == 201, published.text
    print(f"creating {count} local environments from gold@1…", flush=True)
    started = time.monotonic()
    pending, retried = names, 0
    for attempt in range(3):
        operations = {}
        for name in pending:
            response = client.post(
                "/environments", json={"tenant": TENANT, "name": name, "template": "gold"}
            )
            assert response.status_code == 202, response.text
            operations[name] = response.json()["id"]
        failed = {}
        for name, operation in operations.items():
            finished = wait_operation(client, operation, timeout=3600)
            if finished["state"] != "SUCCEEDED":
                failed[name] = finished["error"]
        if not failed:
            break
        # moto 5.2.5's IAM backend is not thread-safe: concurrent creates can hit "dictionary
        # changed size during iteration" (a 500); a create on a FAILED environment retries it.
        print(f"attempt {attempt + 1}: {len(failed)} creates failed, retrying: {failed}")
        pending, retried = list(failed), retried + len(failed)
    else:
        raise SystemExit("creates kept failing")
    print(
        f"created in {time.monotonic() - started:.0f} s ({retried} creates retried)\n", flush=True
    )

    header = (
        f"{'k':>2} {'targets':>7} {'wall s':>8} {'Σ op s':>8} {'ideal s':>8} "
        f"{'ideal+canary s':>15} {'wall/ideal':>10} {'overhead/target s':>18} "
        f"{'scheduler s':>12} {'pickup s':>9}"
    )
    rows = []
    for index, bound in enumerate(bounds):
        memory = 512 + 64 * (index + 1)
        version = client.post(
            "/admin/templates/gold/versions", json={"config": {"memory_mb": memory}}
        )
        assert version.status_code == 201, version.text
        rows.append(measure(client, bound, count, memory, args))
        print(header)
        for row in rows:
            print(row)
        print(flush=True)


def measure(
    client: httpx.Client, bound: int, count: int, memory: int, args: argparse.Namespace
) -> str:
    body = {
        "selector": {"tenants": [TENANT], "template": "gold", "outdated": True},
        "strategy": {
            "canary": args.canary,
            "maxConcurrent": bound,
            "maxFailures": 0,
            "verify": args.verify,
        },
    }
    response = client.post("/rollouts", json=body)
    assert response.status_code in (201, 202), response.text
    rollout_id = response.json()["id"]
    deadline = time.monotonic() + 3600
    while True:
        rollout: dict[str, Any] = client.get(f"/rollouts/{rollout_id}").json()
        if rollout["state"] in FINAL_ROLLOUT_STATES:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"rollout {rollout_id} still {rollout['state']} after an hour")
        time.sleep(0.25)
    assert rollout["state"] == "SUCCEEDED", rollout
    targets = rollout["targets"]
    assert len(targets) == count, len(targets)
    operations = [client.get(f"/operations/{t['operationId']}").json() for t in targets]
    assert all(op["state"] == "SUCCEEDED" for op in operations)
    created = {op["id"]: parse_time(op["createdAt"]) for op in operations}
    begun = {op["id"]: parse_time(op["startedAt"]) for op in operations}
    ended = {op["id"]: parse_time(op["finishedAt"]) for op in operations}
    durations = {op_id: ended[op_id] - begun[op_id] for op_id in ended}
    wall = parse_time(rollout["finishedAt"]) - parse_time(rollout["createdAt"])
    canaries = {t["operationId"] for t in targets if t.get("canary")}
    total = sum(durations.values())
    ideal = total / bound
    ideal_canary = (
        sum(durations[c] for c in canaries) + (total - sum(durations[c] for c in canaries)) / bound
    )
    overhead = (wall - ideal_canary) * bound / count
    scheduler = statistics.mean(slot_gaps(created, ended, bound, canaries) or [0.0])
    pickup = statistics.mean(begun[op_id] - created[op_id] for op_id in created)
    for target in targets:
        environment = client.get(f"/environments/{target['tenant']}/{target['name']}").json()
        assert environment["config"]["memory_mb"] == memory, environment["config"]
    return (
        f"{bound:>2} {count:>7} {wall:>8.1f} {total:>8.1f} {ideal:>8.1f} {ideal_canary:>15.1f} "
        f"{wall / ideal:>10.2f} {overhead:>18.2f} {scheduler:>12.2f} {pickup:>9.2f}"
    )


def slot_gaps(
    created: dict[str, float], ended: dict[str, float], bound: int, canaries: set[str]
) -> list[float]:
    """For each target queued into a slot another target freed: the time from that freeing to
    its queuing (the scheduler's reaction). Matched greedily in time order."""
    order = sorted(created, key=created.__getitem__)
    rest = [op_id for op_id in order if op_id not in canaries]
    refills = rest[bound:]  # the first `bound` after the canaries fill the empty slots
    frees = sorted(ended[op_id] for op_id in rest)
    gaps = []
    for op_id in refills:
        if frees and frees[0] <= created[op_id]:
            gaps.append(created[op_id] - frees.pop(0))
    return gaps


if __name__ == "__main__":
    main()
