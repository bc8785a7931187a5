"""The local runtime of one environment: its functions and its ingest event source, running.

Each environment gets its own worker processes, which host its handlers: an invocation runs in
one of them with exactly that function's environment variables, so several environments share
the service without sharing handler state or configuration. moto's Lambda hook (the
dispatcher) hands each invocation to the environment's processes; the ingest poller plays the
SQS event source mapping and invokes the ingest function through the Lambda API, as AWS does.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from typing import Final

import structlog

from provisioner.emulator import MOTO_ACCOUNT_ID
from provisioner.emulator.apply import AwsClients
from provisioner.emulator.event_source import IngestPoller, lambda_invoker
from provisioner.emulator.lambda_dispatch import InvocationResult, LambdaDispatcher
from provisioner.emulator.lambda_runtime import TIMEOUT_ERROR, LocalFunction, pipeline_functions
from provisioner.lifeline import die_with_parent, watch_service
from stacks import spec
from stacks.config import PipelineConfig

log = structlog.get_logger(__name__)

# Beyond a function's own timeout, how long to wait for its worker before giving up on it.
_INVOCATION_GRACE_S: Final = 30.0
LOCAL_CREDENTIALS: Final = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}


def prepare_runtime_process(endpoint_url: str, region: str, service_pid: int) -> None:
    """Initializer of a runtime worker: its AWS SDK talks to the emulator, as the functions'
    would talk to AWS. (A dedicated process, so setting its environment is its own business.)
    It exits with the service: an idle worker would otherwise wait on its queue forever."""
    die_with_parent()
    watch_service(service_pid)
    for name in list(os.environ):
        if name.startswith("AWS_") or name.lower() in ("http_proxy", "https_proxy"):
            del os.environ[name]
    os.environ.update(
        {
            **LOCAL_CREDENTIALS,
            "AWS_ENDPOINT_URL": endpoint_url,
            "AWS_DEFAULT_REGION": region,
            "AWS_REGION": region,
        }
    )


class EnvironmentRuntime:
    """Started once the environment exists in the emulator; stopped before it is destroyed."""

    def __init__(
        self,
        config: PipelineConfig,
        endpoint_url: str,
        dispatcher: LambdaDispatcher,
        workers: int,
    ) -> None:
        self.config = config
        self._endpoint_url = endpoint_url
        self._dispatcher = dispatcher
        self._workers = workers
        self._functions = pipeline_functions(config, account_id=MOTO_ACCOUNT_ID)
        self._pool = self._new_pool()
        self._pool_lock = threading.Lock()
        names = spec.names(config, MOTO_ACCOUNT_ID)
        clients = AwsClients.for_endpoint(endpoint_url, region=config.region)
        queue_url = clients.sqs.get_queue_url(QueueName=names.ingest_queue)["QueueUrl"]
        queue_arn = spec.pipeline_arns(config, MOTO_ACCOUNT_ID).ingest_queue
        self._poller = IngestPoller(
            clients.sqs,
            queue_url,
            queue_arn,
            lambda_invoker(clients.lambda_, names.functions["ingest"]),
        )

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self._workers,
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=prepare_runtime_process,
            initargs=(self._endpoint_url, self.config.region, os.getpid()),
        )

    def start(self) -> None:
        for name, function in self._functions.items():
            self._dispatcher.register(name, self._invoker(function))
        self._poller.start()
        log.info("runtime.started", environment=self.config.stack_name, workers=self._workers)

    def pause_intake(self) -> None:
        """Take no more messages from the ingest queue (what is running goes on)."""
        self._poller.stop()

    def stop(self) -> None:
        self._poller.stop()
        for name in self._functions:
            self._dispatcher.unregister(name)
        with self._pool_lock:
            self._pool.shutdown(wait=False, cancel_futures=True)
        log.info("runtime.stopped", environment=self.config.stack_name)

    def invoke(self, function_name: str, payload: bytes) -> InvocationResult:
        """Invoke one of this environment's functions directly (the local status API)."""
        return self._invoker(self._functions[function_name])(payload)

    def _invoker(self, function: LocalFunction) -> _PoolInvoker:
        return _PoolInvoker(self, function)

    def _submit(self, function: LocalFunction, payload: bytes) -> Future[InvocationResult]:
        with self._pool_lock:
            try:
                return self._pool.submit(function, payload)
            except BrokenProcessPool:
                # A worker died (killed, out of memory): like Lambda, start a fresh one.
                log.warning("runtime.pool_replaced", environment=self.config.stack_name)
                self._pool = self._new_pool()
                return self._pool.submit(function, payload)


class _PoolInvoker:
    def __init__(self, runtime: EnvironmentRuntime, function: LocalFunction) -> None:
        self._runtime = runtime
        self._function = function

    def __call__(self, payload: bytes) -> InvocationResult:
        function = self._function
        future = self._runtime._submit(function, payload)
        try:
            return future.result(timeout=function.timeout_s + _INVOCATION_GRACE_S)
        except FutureTimeout:
            return InvocationResult.failure(
                TIMEOUT_ERROR, f"Task timed out after {function.timeout_s:.2f} seconds"
            )
        except BrokenProcessPool:
            return InvocationResult.failure(
                "Runtime.ExitError", "the function's worker process exited during the invocation"
            )
