"""Snapshots of the emulator's state: moto's backends, pickled, and restored in a new process.

moto keeps every emulated resource in module-level `BackendDict`s; a snapshot pickles all of
them at once (so objects shared between services stay shared) and a restore puts them back
into the live dicts of a freshly reset emulator. What pickle cannot carry is rebuilt: locks
become new locks, weak-value maps are rebuilt from their values, private keys travel as DER,
and a Step Functions execution keeps its status and history but not its interpreter thread
(`RecordedWorker` stands in for it). An execution that was still RUNNING when the snapshot was
taken is reported by `restore` as interrupted, and an SQS message received but not yet deleted
is visible again at once (its receiver did not survive the restart either).

Large immutable payloads (S3 object bodies, Lambda code, the histories of finished
executions, pickled once) are not pickled with the rest: the pickle refers to them by digest
and they live beside it as files of their own (`blobs.BlobStore`), written once, so a snapshot
does not pay again for every byte and every history event stored.

The file starts with a one-line JSON header (format, moto's version, the payload's SHA-256, and
`takenAt`, the instant the state is as of):
a snapshot of another format or moto version, one that does not match its checksum, or one
whose payload files are missing or corrupt, is refused (`SnapshotError`) rather than
half-restored.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib
import io
import json
import pickle
import sys
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import moto
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from moto.core.base_backend import AccountSpecificBackend, BackendDict
from moto.s3.models import FakeKey
from moto.s3.utils import _VersionedKeyStore
from moto.sqs.models import SQSBackend
from moto.stepfunctions.parser.api import ExecutionStatus
from moto.stepfunctions.parser.backend.execution import Execution

from provisioner.datadir import write_atomically
from provisioner.emulator.blobs import MIN_BLOB_BYTES, BlobError, BlobStore

# 2: large payloads live in content-addressed files beside the pickle (`blobs`).
SNAPSHOT_FORMAT: Final = 2
# The error of an execution that a restart interrupted (it is FAILED after the restore).
INTERRUPTED_ERROR: Final = "Emulator.Interrupted"

_LOCK_TYPE: Final = type(threading.Lock())
_RLOCK_TYPE: Final = type(threading.RLock())
_PRIVATE_KEY_TYPES: Final = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)


class SnapshotError(Exception):
    """The snapshot cannot be used (missing, corrupt, or written by another version)."""


@dataclass(frozen=True)
class InterruptedExecution:
    """A Step Functions execution that was RUNNING when the snapshot was taken (now FAILED)."""

    execution_arn: str
    state_machine_arn: str
    input: dict[str, Any]


# --- what stands in for a Step Functions interpreter ----------------------------------------


class RecordedWorker:
    """An execution's worker after a restore: its history, no thread. It answers what moto's
    backend asks a finished execution's worker (`exec_worker.env.…`)."""

    def __init__(self, history: list[Any]) -> None:
        self.history = history

    @property
    def env(self) -> RecordedWorker:
        return self

    @property
    def event_manager(self) -> RecordedWorker:
        return self

    @property
    def callback_pool_manager(self) -> RecordedWorker:
        return self

    @property
    def map_run_record_pool_manager(self) -> RecordedWorker:
        return self

    def get_event_history(self) -> list[Any]:
        return list(self.history)

    def heartbeat(self, callback_id: str) -> bool:
        return False  # no task token of a finished execution is waited for

    def notify(self, callback_id: str, outcome: Any) -> bool:
        return False

    def get(self, map_run_arn: str) -> None:
        return None

    def get_all(self) -> list[Any]:
        return []

    def stop(self, stop_date: Any, error: str | None, cause: str | None) -> None:
        return None  # nothing runs


def _worker_history(worker: Any) -> list[Any]:
    if isinstance(worker, RecordedWorker):
        return worker.history
    env = getattr(worker, "env", None)
    if env is None:
        return []
    return list(env.event_manager.get_event_history())


def _pickled_history(worker: Any) -> bytes | None:
    try:
        return pickle.dumps(_worker_history(worker), protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError):
        return None  # something in it needs the snapshot's own reducers: pickled in place


def _recorded_history(pickled: bytes) -> RecordedWorker:
    return RecordedWorker(pickle.loads(pickled))


@dataclass(frozen=True)
class _StoredHistory:
    """Stands in the pickle for a finished execution's worker: its history, pickled once into
    the blob store (a finished execution's history never changes; it grows with every file)."""

    digest: str

    def __reduce__(self) -> tuple[Any, ...]:
        return _recorded_history, (_StoredPayload(self.digest),)


def _rebuild_execution(cls: type[Execution], state: dict[str, Any]) -> Execution:
    execution = cls.__new__(cls)
    execution.__dict__.update(state)
    return execution


def _weak_values(items: dict[Any, Any]) -> weakref.WeakValueDictionary[Any, Any]:
    return weakref.WeakValueDictionary(items)


def _default_dict(factory: Any, items: dict[Any, Any]) -> defaultdict[Any, Any]:
    return defaultdict(factory, items)


def _plain_factory(factory: Any) -> Any:
    """A `lambda: {}` (moto's defaultdict factories) as the type it builds, which pickles."""
    if getattr(factory, "__name__", None) != "<lambda>":
        return factory
    sample = factory()
    if type(sample) in (dict, list, set) and not sample:
        return type(sample)
    raise SnapshotError(f"cannot carry the defaultdict factory {factory.__qualname__}")


def _new_object(cls: type[FakeKey]) -> Any:
    """As unpickling makes an object (moto's models count their instances in `__new__`)."""
    return cls.__new__(cls)


def _versioned_keys(cls: type[_VersionedKeyStore], lists: dict[str, list[Any]]) -> Any:
    store = cls()
    for key, versions in lists.items():
        store.setlist(key, versions)
    return store


def _private_key(der: bytes) -> Any:
    # The key was valid when the snapshot (checked against its digest) was taken; checking an
    # RSA key again costs up to a quarter of a second each, most of a restore's time.
    return serialization.load_der_private_key(
        der, password=None, unsafe_skip_rsa_key_validation=True
    )


# --- pickling -------------------------------------------------------------------------------


def _backend_dicts() -> Iterator[tuple[str, str, BackendDict[Any]]]:
    """Every BackendDict in use, with the module attribute that holds it."""
    for backends in list(BackendDict._instances):  # type: ignore[misc]
        module_name = backends.backend.__module__
        module = sys.modules.get(module_name)
        for attribute, value in vars(module or object()).items():
            if value is backends:
                yield module_name, attribute, backends
                break
        else:
            name = backends.service_name
            raise SnapshotError(f"no module attribute holds moto's {name} backends")


def _live_backends(module_name: str, attribute: str) -> BackendDict[Any]:
    backends = getattr(importlib.import_module(module_name), attribute, None)
    if not isinstance(backends, BackendDict):
        raise SnapshotError(f"{module_name}.{attribute} is not one of moto's backend dicts")
    return backends


@dataclass(frozen=True)
class _StoredPayload:
    """Stands in the pickle for an S3 object's body already in the blob store."""

    digest: str


def _object_state(key: FakeKey, blobs: BlobStore) -> dict[str, Any]:
    """An S3 object's pickled state (as its own `__getstate__`), its body by reference: moto
    never changes a key's body in place (a put makes a new key), so it is read and hashed
    once, not at every snapshot."""
    state = {k: v for k, v in key.__dict__.items() if k not in ("_value_buffer", "lock")}
    digest = blobs.owned_digest(key)
    if digest is not None:
        state["value"] = _StoredPayload(digest)
        return state
    try:
        body = key.value
    except ValueError:  # its buffer is closed: a deleted key, as moto's __getstate__ says
        body = b""
    if len(body) >= MIN_BLOB_BYTES:
        state["value"] = _StoredPayload(blobs.reference_owned(key, body))
    else:
        state["value"] = body
    return state


class _Pickler(pickle.Pickler):
    def __init__(
        self, file: io.BytesIO, names: dict[int, tuple[str, str]], blobs: BlobStore
    ) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._names = names
        self._blobs = blobs

    def persistent_id(self, obj: Any) -> Any:
        # Called for every object pickled: the common case (None) after a few identity tests.
        kind = type(obj)
        if kind is _StoredPayload:
            return ("blob", "bytes", obj.digest)
        if (kind is bytes or kind is str) and len(obj) >= MIN_BLOB_BYTES:
            # Large payloads by digest (reducer_override never sees bytes or str; this does).
            return ("blob", kind.__name__, self._blobs.reference(obj))
        if kind is BackendDict:
            # Backend dicts referenced from inside a backend stay the process's own dicts.
            return ("backends", *self._names[id(obj)])
        if type(obj) is AccountSpecificBackend:
            for backends_id, (module_name, attribute) in self._names.items():
                owner = _live_backends(module_name, attribute)
                if id(owner) == backends_id and owner.get(obj.account_id) is obj:
                    return ("account", module_name, attribute, obj.account_id)
        return None

    def _worker(self, execution: Execution) -> RecordedWorker | _StoredHistory:
        if execution.exec_status != ExecutionStatus.RUNNING:
            digest = self._blobs.owned_digest(execution)
            if digest is not None:
                return _StoredHistory(digest)
            pickled = _pickled_history(execution.exec_worker)
            if pickled is not None and len(pickled) >= MIN_BLOB_BYTES:
                return _StoredHistory(self._blobs.reference_owned(execution, pickled))
        return RecordedWorker(_worker_history(execution.exec_worker))

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, _RLOCK_TYPE):
            return threading.RLock, ()
        if isinstance(obj, _LOCK_TYPE):
            return threading.Lock, ()
        if isinstance(obj, FakeKey):
            # As object.__reduce_ex__ does (state set after memoising: cycles stay cycles).
            return _new_object, (type(obj),), _object_state(obj, self._blobs)
        if isinstance(obj, _VersionedKeyStore):
            # Its items() yields only each key's latest version; pickle would drop the others.
            return _versioned_keys, (type(obj), dict(obj.lists()))
        if isinstance(obj, defaultdict) and type(obj) is defaultdict:
            return _default_dict, (_plain_factory(obj.default_factory), dict(obj))
        if isinstance(obj, weakref.WeakValueDictionary):
            return _weak_values, (dict(obj.items()),)
        if isinstance(obj, _PRIVATE_KEY_TYPES):
            der = obj.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            return _private_key, (der,)
        if isinstance(obj, Execution):
            state = dict(obj.__dict__)
            state["exec_worker"] = self._worker(obj)
            return _rebuild_execution, (type(obj), state)
        return NotImplemented


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, blobs: BlobStore) -> None:
        super().__init__(file)
        self._blobs = blobs

    def persistent_load(self, pid: Any) -> Any:
        if pid[0] == "blob":
            _, text, digest = pid
            payload = self._blobs.read(digest)
            return payload.decode() if text == "str" else payload
        kind, module_name, attribute, *rest = pid
        backends = _live_backends(module_name, attribute)
        if kind == "backends":
            return backends
        if kind == "account":
            return backends[rest[0]]
        raise pickle.UnpicklingError(f"unknown persistent id {kind!r}")


def capture(blobs: BlobStore) -> bytes:
    """The emulator's whole state, as a snapshot file's bytes (header and payload).

    The caller keeps requests out meanwhile (`RequestGate.paused`): moto's dicts must not change
    while they are pickled. The large payloads met for the first time wait in `blobs`: the
    caller writes them (`BlobStore.write_pending`) before the snapshot itself."""
    taken_at = time.time()
    entries = list(_backend_dicts())
    names = {id(backends): (module_name, attribute) for module_name, attribute, backends in entries}
    state = [
        (module_name, attribute, {account: dict(regions) for account, regions in backends.items()})
        for module_name, attribute, backends in entries
    ]
    buffer = io.BytesIO()
    blobs.begin()
    _Pickler(buffer, names, blobs).dump(state)
    blobs.end()
    payload = buffer.getvalue()
    header = {
        "format": SNAPSHOT_FORMAT,
        "moto": moto.__version__,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "size": len(payload),
        "blobs": len(blobs.referenced),
        # The durable point: everything acknowledged before this instant is in the snapshot.
        "takenAt": taken_at,
    }
    return json.dumps(header).encode() + b"\n" + payload


def restore(snapshot: bytes, blobs: BlobStore) -> list[InterruptedExecution]:
    """Put a snapshot's state into moto's (freshly reset) backends, its large payloads read
    from `blobs`; returns the executions that were still running when it was taken (now
    without a thread: see the module doc). Nothing is put back unless all of it loads."""
    header_line, _, payload = snapshot.partition(b"\n")
    try:
        header = json.loads(header_line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SnapshotError("the snapshot has no readable header") from None
    if not isinstance(header, dict) or header.get("format") != SNAPSHOT_FORMAT:
        raise SnapshotError(f"the snapshot's format is not {SNAPSHOT_FORMAT}")
    if header.get("moto") != moto.__version__:
        raise SnapshotError(
            f"the snapshot was taken with moto {header.get('moto')}, this is {moto.__version__}"
        )
    if header.get("sha256") != hashlib.sha256(payload).hexdigest():
        raise SnapshotError("the snapshot does not match its checksum (truncated or corrupt)")
    try:
        state = _Unpickler(io.BytesIO(payload), blobs).load()
    except BlobError as error:
        raise SnapshotError(str(error)) from None
    except Exception as error:  # unpickling raises anything (EOFError, AttributeError, ...)
        raise SnapshotError(f"the snapshot cannot be loaded ({type(error).__name__})") from None
    interrupted: list[InterruptedExecution] = []
    for module_name, attribute, accounts in state:
        backends = _live_backends(module_name, attribute)
        for account, regions in accounts.items():
            account_backends = backends[account]
            for region, backend in regions.items():
                dict.__setitem__(account_backends, region, backend)
                interrupted.extend(_interrupted(backend))
                if isinstance(backend, SQSBackend):
                    _release_received(backend)
    return interrupted


def _release_received(backend: SQSBackend) -> None:
    """Messages in flight at the snapshot: nothing will delete them now, so rather than wait
    out their visibility timeout (minutes), they are received again at once."""
    for queue in backend.queues.values():
        for message in queue._messages:
            message.visible_at = 0.0
        queue.pending_messages.clear()


def _executions(backend: Any) -> Iterator[tuple[Any, Execution]]:
    for state_machine in list(getattr(backend, "state_machines", [])):
        for execution in list(getattr(state_machine, "executions", [])):
            if isinstance(execution, Execution):
                yield state_machine, execution


def _interrupted(backend: Any) -> Iterator[InterruptedExecution]:
    """The restored executions that were RUNNING: now FAILED, for nothing runs them any more."""
    for state_machine, execution in _executions(backend):
        if execution.exec_status == ExecutionStatus.RUNNING:
            execution.exec_status = ExecutionStatus.FAILED
            execution.error = INTERRUPTED_ERROR
            execution.cause = "the emulator stopped while the execution ran"
            execution.stop_date = datetime.datetime.now(tz=datetime.UTC)
            yield InterruptedExecution(
                execution.exec_arn, state_machine.arn, dict(execution.input_data or {})
            )


def running_executions() -> int:
    """How many Step Functions executions are running in the emulator now."""
    return sum(
        execution.exec_status == ExecutionStatus.RUNNING
        for _, _, backends in _backend_dicts()
        for _, _, backend in backends.iter_backends()
        for _, execution in _executions(backend)
    )


# --- the file -------------------------------------------------------------------------------


def write_file(path: Path, snapshot: bytes) -> None:
    """Replace `path` atomically (temporary file, fsync, rename): a crash leaves the old one."""
    write_atomically(path, snapshot)


def taken_at(path: Path) -> float | None:
    """When the snapshot at `path` was taken (epoch seconds), from its header; None if unknown."""
    try:
        with path.open("rb") as file:
            header = json.loads(file.readline())
    except (OSError, ValueError):
        return None
    value = header.get("takenAt") if isinstance(header, dict) else None
    return float(value) if isinstance(value, int | float) else None


def read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SnapshotError("there is no snapshot") from None
    except OSError as error:
        raise SnapshotError(f"the snapshot cannot be read ({error.strerror})") from None
