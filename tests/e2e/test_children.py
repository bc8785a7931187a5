"""No child process outlives the service (architecture.md §9): `kill -9` of the service takes its
forkserver, resource tracker, runtime workers and operation workers with it."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psutil

from tests.e2e.service import service_process
from tests.e2e.trades import trades_csv

# How long the children of a killed service may take to notice and exit.
EXIT_WITHIN_S = 5.0


def _gone(processes: list[psutil.Process]) -> bool:
    alive = []
    for process in processes:
        try:
            # is_running() compares the start time too: a reused pid is not "ours".
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            continue
    return not alive


def test_sigkill_of_the_service_leaves_no_child_running(tmp_path: Path) -> None:
    with service_process(tmp_path / "data") as (server, service):
        environment = service.create("acme", "keep")
        files = [
            service.upload(environment, f"incoming/{index}.csv", trades_csv()) for index in range(3)
        ]
        assert service.wait_for_file("acme", "keep", files[0])["status"] == "COMPLETED"
        # Files keep flowing and another create runs while the service dies.
        for index in range(3, 8):
            service.upload(environment, f"incoming/{index}.csv", trades_csv())
        creating = service.client.post("/environments", json={"tenant": "acme", "name": "next"})
        assert creating.status_code == 202
        deadline = time.monotonic() + 30
        while service.client.get(creating.headers["Location"]).json()["state"] != "RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        children = psutil.Process(server.pid).children(recursive=True)
        commands = [" ".join(child.cmdline()) for child in children]
        assert any("forkserver" in command for command in commands), commands
        assert any("resource_tracker" in command for command in commands), commands
        # And forked by the forkserver: the operation worker and runtime worker(s).
        assert len(children) >= 4, commands
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        killed_at = time.monotonic()
        while not _gone(children):
            if time.monotonic() - killed_at > EXIT_WITHIN_S:
                survivors = [c.pid for c in children if c.is_running()]
                for child in children:
                    if child.is_running():
                        child.kill()
                raise AssertionError(f"children outlived the service: {survivors} of {commands}")
            time.sleep(0.1)
