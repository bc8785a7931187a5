"""moto's Step Functions interpreter, without two costs it pays on every execution.

moto 5.2.x's interpreter, run for every file, spends most of its CPU on work that does not
change from one execution to the next:

- It parses the state machine's definition again with ANTLR for every execution
  (`ExecutionWorker._get_evaluation_entrypoint`: about 170 ms of CPU for the pipeline's). The
  program it builds is immutable once built (what an execution changes lives in its
  `Environment`), so `FastInterpreter` parses each definition once and shares the program.
- Each Task state's call (`lambda:invoke`, `dynamodb:updateItem`, `sqs:sendMessage`) builds a
  boto3 client for that one call (`boto_client_for`, about 7 ms of CPU) and sends it over
  loopback HTTP to `localhost:$MOTO_PORT`. Here one client per region and service is built
  once, with moto's own settings, and its requests reach the emulator's application in
  process (`in_process.InProcessTransport`): the same moto answers, through the same gate.

When moto runs in-process (`mock_aws`, whose stubber answers every boto3 call), moto's own
client factory is used: it knows that mode. The patched names are listed and checked at
install, so a moto upgrade that moves them fails loudly instead of silently going slow.
"""

from __future__ import annotations

import importlib
import threading
from collections import OrderedDict
from typing import Any, Final

import boto3
import structlog
from botocore.config import Config

from provisioner.emulator.in_process import InProcessTransport

log = structlog.get_logger(__name__)

_FACTORY: Final = "boto_client_for"
_PARSER: Final = "moto.stepfunctions.parser.asl"
_TASK: Final = f"{_PARSER}.component.state.exec.state_task"
_MAP: Final = f"{_PARSER}.component.state.exec.state_map"
# Every module of moto 5.2.x that imports `boto_client_for` (and the one that defines it).
CLIENT_FACTORY_MODULES: Final = (
    f"{_PARSER}.utils.boto_client",
    f"{_TASK}.lambda_eval_utils",
    *(
        f"{_TASK}.service.state_task_service_{name}"
        for name in (
            "aws_sdk",
            "batch",
            "dynamodb",
            "ecs",
            "events",
            "glue",
            "sfn",
            "sns",
            "sqs",
            "unsupported",
        )
    ),
    f"{_MAP}.item_reader.eval.resource_eval_s3",
    f"{_MAP}.result_writer.resource_eval.resource_eval_s3",
)
_ENTRYPOINT: Final = "_get_evaluation_entrypoint"
# Parsed programs kept (least recently used goes first): one per deployed definition.
PROGRAM_CACHE_SIZE: Final = 256


def _execution_worker_class() -> type:
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    return ExecutionWorker


def _assign_heap_keys(program: Any) -> None:
    """Give every component of `program` its heap key now, before executions share it.

    A component names its per-execution state (retry attempts, backoff) in the execution's
    heap by a key it draws lazily on first use; two executions drawing it at once could each
    keep a different one."""
    from moto.stepfunctions.parser.asl.component.component import Component
    from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent

    seen: set[int] = set()
    pending: list[Any] = [program]
    while pending:
        node = pending.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, EvalComponent):
            _ = node.heap_key
        if isinstance(node, Component):
            pending.extend(vars(node).values())
        elif isinstance(node, list | tuple | set | frozenset):
            pending.extend(node)
        elif isinstance(node, dict):
            pending.extend(node.values())


class FastInterpreter:
    """Installs both changes (see the module docstring); process-global, one at a time."""

    def __init__(self, transport: InProcessTransport) -> None:
        self._transport = transport
        self._clients: dict[tuple[str, str], Any] = {}
        self._programs: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._parse_lock = threading.Lock()
        self._original_factory: Any = None
        self._original_entrypoint: Any = None
        self.parses = 0  # definitions parsed (diagnostics, tests)

    # --- the interpreter's clients ----------------------------------------------------------

    def client_for(self, region: str, service: str, state_credentials: Any = None) -> Any:
        """`boto_client_for`'s signature and moto's client settings; sent in process."""
        from moto.core.models import botocore_stubber
        from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import (
            TimeoutSeconds,
        )

        original = self._original_factory
        if botocore_stubber.enabled and original is not None:
            return original(region, service, state_credentials)
        key = (region, service)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                # moto's credentials and settings; it never checks the credentials.
                client = boto3.session.Session().client(
                    service,  # type: ignore[call-overload]
                    region_name=region,
                    endpoint_url=self._transport.endpoint_url,
                    aws_access_key_id="ak",
                    aws_secret_access_key="sk",
                    config=Config(
                        parameter_validation=False,
                        retries={"max_attempts": 0, "total_max_attempts": 1},
                        connect_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
                        read_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
                    ),
                )
                self._transport.attach(client)
                self._clients[key] = client
            return client

    # --- the parsed programs ------------------------------------------------------------------

    def program(self, definition: str) -> Any:
        """The evaluation entry point of `definition`, parsed once."""
        from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

        with self._lock:
            program = self._programs.get(definition)
            if program is not None:
                self._programs.move_to_end(definition)
                return program
        # One parse at a time, outside the clients' lock: executions of a new definition
        # started together wait for its one parse (parsing is CPU under the interpreter lock:
        # parsing in parallel would gain nothing and parse it once per execution).
        with self._parse_lock:
            with self._lock:
                program = self._programs.get(definition)
            if program is not None:
                return program
            program = AmazonStateLanguageParser.parse(definition)[0]
            _assign_heap_keys(program)
            with self._lock:
                self.parses += 1
                self._programs[definition] = program
                while len(self._programs) > PROGRAM_CACHE_SIZE:
                    self._programs.popitem(last=False)
        return program

    # --- installing ---------------------------------------------------------------------------

    def install(self) -> None:
        global _installed
        with _INSTALL_LOCK:
            if _installed is self:
                return
            if _installed is not None:
                raise RuntimeError("moto's Step Functions interpreter is already patched")
            modules = [importlib.import_module(name) for name in CLIENT_FACTORY_MODULES]
            factory = getattr(modules[0], _FACTORY, None)
            for module in modules:
                if factory is None or getattr(module, _FACTORY, None) is not factory:
                    raise RuntimeError(
                        f"moto changed: {module.__name__}.{_FACTORY} is not moto's client "
                        "factory; check provisioner.emulator.step_functions against the "
                        "installed moto"
                    )
            worker = _execution_worker_class()
            entrypoint = worker.__dict__.get(_ENTRYPOINT)
            if entrypoint is None or not callable(entrypoint):
                raise RuntimeError(
                    f"moto changed: {worker.__qualname__}.{_ENTRYPOINT} no longer exists; "
                    "check provisioner.emulator.step_functions against the installed moto"
                )
            self._original_factory = factory
            self._original_entrypoint = entrypoint
            for module in modules:
                setattr(module, _FACTORY, self.client_for)
            setattr(worker, _ENTRYPOINT, self._make_entrypoint())
            _installed = self
        log.info("emulator.step_functions.installed", modules=len(modules))

    def uninstall(self) -> None:
        global _installed
        with _INSTALL_LOCK:
            if _installed is not self:
                return
            for name in CLIENT_FACTORY_MODULES:
                setattr(importlib.import_module(name), _FACTORY, self._original_factory)
            setattr(_execution_worker_class(), _ENTRYPOINT, self._original_entrypoint)
            self._original_factory = self._original_entrypoint = None
            _installed = None
        with self._lock:
            self._clients.clear()
            self._programs.clear()
        log.info("emulator.step_functions.uninstalled")

    def _make_entrypoint(self) -> Any:
        interpreter = self

        def _get_evaluation_entrypoint(worker: Any) -> Any:
            definition = worker._evaluation_details.state_machine_details.definition
            return interpreter.program(definition)

        return _get_evaluation_entrypoint


_INSTALL_LOCK: Final = threading.Lock()
_installed: FastInterpreter | None = None
