"""The emulator's state on disk: restored at start, saved on demand, periodically and at
shutdown.

A snapshot (`snapshot`) is taken with requests held at the gate (`gate.RequestGate`), so it is
a consistent cut of the emulator, and written atomically to one file under the data directory
(0600), its large payloads beside it (`blobs`). It is taken when someone waits for durability
(`wait_durable`: the published listener before it answers a write, the service before it
acknowledges an upload or an operation), every `interval_s` when something changed, and once
more when the service stops. Waits are group commits: a waiter that finds a snapshot being
taken waits for it to finish, then takes one more only if its changes are not in it, so one
snapshot covers every waiter that arrived meanwhile.

After a SIGKILL the emulator comes back as of the last snapshot: every write acknowledged to a
party outside the service is in it. The service's own traffic since (the pipeline's progress)
is lost with it; `restore` reports the executions that were running at the cut as
interrupted, for the caller to start again.

Why the pickle is not taken in a forked child (as Redis's BGSAVE does, pausing only for the
fork): the service runs dozens of threads (the HTTP servers, pollers, operation runners, the
Step Functions interpreters), and a fork copies only the calling one; a lock held by any other
at that instant (moto's per-object locks, logging's, the import lock) stays held forever in the
child, so the child can deadlock while pickling, and CPython deprecates fork in a threaded
process for that reason. Measured on the state of 20 environments (bench.restart's), alone on
the machine: a capture takes 76-113 ms (the pickler over ~210k small objects; the payloads'
bytes were never the cost), a fork of a 255 MB process 8-19 ms. A snapshot that hangs would
hold every write's acknowledgement, so the pause is paid instead.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import structlog

from provisioner.datadir import private_directory
from provisioner.emulator import snapshot
from provisioner.emulator.blobs import BLOB_DIR, BlobStore
from provisioner.emulator.gate import RequestGate
from provisioner.emulator.snapshot import InterruptedExecution, SnapshotError

log = structlog.get_logger(__name__)

SNAPSHOT_FILE: Final = "snapshot.bin"
# How long a snapshot waits for requests under way before it gives up (and tries again later).
_PAUSE_TIMEOUT_S: Final = 10.0
# A capture that meets a dict changing under it (an ungated request) is simply taken again.
_CAPTURE_ATTEMPTS: Final = 5
# How long `wait_durable` waits for the snapshot in progress before it gives up.
_DURABLE_TIMEOUT_S: Final = 30.0


@dataclass(frozen=True)
class RestoreOutcome:
    """What the start found: restored, or why not (then the emulator starts empty)."""

    restored: bool
    reason: str | None = None
    interrupted: list[InterruptedExecution] = field(default_factory=list)


@dataclass(frozen=True)
class SnapshotFigures:
    size_bytes: int
    pause_s: float  # requests held at the gate
    total_s: float  # including the writes and fsyncs
    blob_bytes_written: int = 0  # payloads met for the first time


class EmulatorPersistence:
    """Keeps the emulator's state in `directory` (see the module docstring)."""

    def __init__(self, directory: Path, gate: RequestGate, interval_s: float) -> None:
        self._path = directory / SNAPSHOT_FILE
        self._directory = directory
        self._blobs = BlobStore(directory / BLOB_DIR)
        self._gate = gate
        self._interval_s = interval_s
        self._saved_changes = -1
        self._save_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def path(self) -> Path:
        return self._path

    def restore(self) -> RestoreOutcome:
        """Load the snapshot into the (freshly reset) emulator, if there is a usable one."""
        private_directory(self._directory)
        started = time.perf_counter()
        try:
            data = snapshot.read_file(self._path)
            interrupted = snapshot.restore(data, self._blobs)
        except SnapshotError as error:
            log.warning("emulator.snapshot.unusable", path=str(self._path), reason=str(error))
            return RestoreOutcome(False, str(error))
        self._saved_changes = self._gate.changes
        log.info(
            "emulator.snapshot.restored",
            size_bytes=len(data),
            seconds=round(time.perf_counter() - started, 3),
            interrupted_executions=len(interrupted),
        )
        return RestoreOutcome(True, interrupted=interrupted)

    def start(self) -> None:
        if self._interval_s <= 0 or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="emulator-snapshots", daemon=True)
        self._thread.start()

    def stop(self) -> SnapshotFigures | None:
        """Stop the periodic snapshots and take the last one, unless the one on disk (a periodic
        one that just finished, say) already holds every change."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(_PAUSE_TIMEOUT_S * 2)
            self._thread = None
        try:
            return self.save()
        except (TimeoutError, RuntimeError, OSError, SnapshotError) as error:
            # The service still stops; the last good snapshot stays on disk (and every write
            # acknowledged outside the service is in it).
            log.warning("emulator.snapshot.failed", error=str(error), at="stop")
            return None

    @property
    def durable_changes(self) -> int:
        """The gate's change count as of the snapshot on disk (-1: none taken yet)."""
        return self._saved_changes

    def wait_durable(self, timeout_s: float = _DURABLE_TIMEOUT_S) -> None:
        """Return once every change the emulator has taken so far is in a snapshot on disk.

        Raises TimeoutError, OSError, RuntimeError or SnapshotError if that cannot be done (the
        caller then must not acknowledge what it waited for)."""
        target = self._gate.changes
        if self._saved_changes >= target:
            return
        if not self._save_lock.acquire(timeout=timeout_s):
            raise TimeoutError(f"no snapshot could be taken within {timeout_s}s")
        try:
            # The snapshot this waiter queued behind may hold its changes already.
            if self._saved_changes < target:
                self._save_locked()
        finally:
            self._save_lock.release()

    def save(self, *, force: bool = False) -> SnapshotFigures | None:
        """Take and write a snapshot if anything changed since the last one (or `force`)."""
        with self._save_lock:
            if not force and self._gate.changes == self._saved_changes:
                return None
            return self._save_locked()

    def _save_locked(self) -> SnapshotFigures:
        started = time.perf_counter()
        private_directory(self._directory)
        data, changes, pause_s = self._capture()
        # The payloads first: a snapshot on disk never references a file that is not there.
        blob_bytes = self._blobs.write_pending()
        snapshot.write_file(self._path, data)
        self._saved_changes = changes
        removed = self._blobs.collect()
        figures = SnapshotFigures(len(data), pause_s, time.perf_counter() - started, blob_bytes)
        log.info(
            "emulator.snapshot.saved",
            size_bytes=figures.size_bytes,
            pause_ms=round(figures.pause_s * 1000, 1),
            total_ms=round(figures.total_s * 1000, 1),
            blobs=len(self._blobs.referenced),
            blob_bytes_written=blob_bytes,
            blobs_removed=removed,
        )
        return figures

    def _capture(self) -> tuple[bytes, int, float]:
        for attempt in range(1, _CAPTURE_ATTEMPTS + 1):
            paused = time.perf_counter()
            with self._gate.paused(_PAUSE_TIMEOUT_S) as changes:
                try:
                    data = snapshot.capture(self._blobs)
                    return data, changes, time.perf_counter() - paused
                except RuntimeError as error:  # "... changed size during iteration"
                    if attempt == _CAPTURE_ATTEMPTS:
                        raise
                    log.info("emulator.snapshot.retried", attempt=attempt, error=str(error))
        raise AssertionError("unreachable")

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.save()
            except (TimeoutError, RuntimeError, OSError, SnapshotError) as error:
                # The next round tries again; the last good snapshot stays on disk meanwhile.
                log.warning("emulator.snapshot.failed", error=str(error))
