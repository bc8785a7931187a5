"""No child process outlives the service, whatever kills it (docs/architecture.md §9).

The service's children are multiprocessing's forkserver and resource tracker, and the
forkserver's children: operation workers and each environment's runtime workers. The forkserver
and the tracker exit by themselves once no process holds their pipes, but every forkserver
child holds both, and a pool worker blocked on its queue would wait forever. So each child
watches the service: a pidfd (or a poll of the pid) on the service process, and a parent-death
signal for the case where its own parent, the forkserver, dies first.

As a last resort the service records its children (pid and start time) in the data dir, and
the next start kills those of a dead run, never a process that merely reuses a pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import psutil
import structlog

from provisioner.datadir import FILE_MODE

log = structlog.get_logger(__name__)

_PR_SET_PDEATHSIG: Final = 1
_RECORD_GLOB: Final = "children-*.json"
_POLL_S: Final = 0.5


def die_with_parent(signum: signal.Signals = signal.SIGKILL) -> None:
    """Ask the kernel to send `signum` when this process's parent ends (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0) != 0:
        log.warning("lifeline.pdeathsig_failed", errno=ctypes.get_errno())


def _exit_now() -> None:
    os._exit(70)


def watch_service(service_pid: int, on_death: Callable[[], None] = _exit_now) -> None:
    """In a child: call `on_death` (default: exit at once) when the service process ends."""
    try:
        descriptor: int | None = os.pidfd_open(service_pid)
    except ProcessLookupError:
        on_death()
        return
    except OSError:  # no pidfd support: poll the pid instead
        descriptor = None

    def wait() -> None:
        if descriptor is not None:
            select.select([descriptor], [], [])  # readable once the process has ended
        else:
            while psutil.pid_exists(service_pid):
                time.sleep(_POLL_S)
        on_death()

    threading.Thread(target=wait, name="service-lifeline", daemon=True).start()


# --- the record of children, and the start-up sweep ---


def _identity(process: psutil.Process) -> dict[str, float | int]:
    return {"pid": process.pid, "started": process.create_time()}


def _record_path(data_dir: Path, pid: int) -> Path:
    return data_dir / f"children-{pid}.json"


def record_children(data_dir: Path) -> int:
    """Write this service's current descendants to the data dir; returns how many."""
    me = psutil.Process()
    children: list[dict[str, float | int]] = []
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            children.append(_identity(child))
    record = {"service": _identity(me), "children": children}
    path = _record_path(data_dir, me.pid)
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(record, handle)
    temporary.replace(path)
    return len(children)


def forget_children(data_dir: Path) -> None:
    """A clean stop: the children are gone, so is the record."""
    _record_path(data_dir, os.getpid()).unlink(missing_ok=True)


def _is(identity: dict[str, float | int]) -> psutil.Process | None:
    """The process `identity` describes, if it still runs (same pid AND same start time)."""
    try:
        process = psutil.Process(int(identity["pid"]))
        if abs(process.create_time() - float(identity["started"])) < 0.01:
            return process
    except (psutil.Error, KeyError, TypeError, ValueError):
        pass
    return None


def sweep_leftovers(data_dir: Path) -> int:
    """Kill what earlier, dead runs left behind; returns how many processes were killed."""
    killed = 0
    for path in sorted(data_dir.glob(_RECORD_GLOB)):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        if _is(record.get("service") or {}) is not None:
            continue  # another replica sharing the data dir, alive
        for identity in record.get("children") or []:
            process = _is(identity)
            if process is None:
                continue
            with contextlib.suppress(psutil.Error):
                process.kill()
                killed += 1
                log.warning("lifeline.leftover_killed", pid=process.pid, record=path.name)
        path.unlink(missing_ok=True)
    return killed


async def keep_record(data_dir: Path, interval_s: float) -> None:
    """Refresh the record every `interval_s`, until cancelled (a task of the lifespan)."""
    while True:
        try:
            await asyncio.to_thread(record_children, data_dir)
        except OSError as error:
            log.warning("lifeline.record_failed", error=str(error))
        await asyncio.sleep(interval_s)
