"""The local runtime of one environment: its functions served, its ingest event source running.

Every environment's functions run on the service's shared runtime workers (`runtime_workers`):
an invocation runs there with exactly that function's environment variables and deployed code,
so environments share processes without sharing configuration or code. moto's Lambda hook (the
dispatcher) hands each invocation of a registered function to the workers; the ingest poller
plays the SQS event source mapping and invokes the ingest function through the emulator's
Lambda, as AWS's poller does through the Lambda service.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from provisioner.emulator import MOTO_ACCOUNT_ID
from provisioner.emulator.event_source import IngestPoller, dispatcher_invoker
from provisioner.emulator.lambda_dispatch import InvocationResult, Invoker, LambdaDispatcher
from stacks import spec
from stacks.config import PipelineConfig

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = structlog.get_logger(__name__)


class EnvironmentRuntime:
    """Started once the environment exists in the emulator; stopped before it is destroyed."""

    def __init__(
        self,
        config: PipelineConfig,
        dispatcher: LambdaDispatcher,
        invoker: Invoker,
        sqs_client: SQSClient,
    ) -> None:
        self.config = config
        self._dispatcher = dispatcher
        self._invoker = invoker
        names = spec.names(config, MOTO_ACCOUNT_ID)
        self._functions = frozenset(names.functions.values())
        queue_url = sqs_client.get_queue_url(QueueName=names.ingest_queue)["QueueUrl"]
        queue_arn = spec.pipeline_arns(config, MOTO_ACCOUNT_ID).ingest_queue
        self._poller = IngestPoller(
            sqs_client,
            queue_url,
            queue_arn,
            dispatcher_invoker(
                dispatcher,
                names.functions["ingest"],
                region=config.region,
                account_id=MOTO_ACCOUNT_ID,
            ),
        )

    def start(self) -> None:
        for name in self._functions:
            self._dispatcher.register(name, self._invoker)
        self._poller.start()
        log.info("runtime.started", environment=self.config.stack_name)

    def request_stop(self) -> None:
        """Start stopping (see `IngestPoller.request_stop`); `stop` finishes it."""
        self._poller.request_stop()

    def pause_intake(self) -> None:
        """Take no more messages from the ingest queue (what is running goes on)."""
        self._poller.stop()

    def stop(self) -> None:
        self._poller.stop()
        for name in self._functions:
            self._dispatcher.unregister(name)
        log.info("runtime.stopped", environment=self.config.stack_name)

    def invoke(self, function_name: str, payload: bytes) -> InvocationResult:
        """Invoke one of this environment's functions directly (the local status API)."""
        if function_name not in self._functions:
            raise KeyError(function_name)
        return self._dispatcher.invoke(
            function_name, payload, region=self.config.region, account_id=MOTO_ACCOUNT_ID
        )
