"""Files whose execution a restart interrupted: each gets one new attempt, as a retry would.

An execution that was running when the emulator's last snapshot was taken did not survive the
restart (`emulator.snapshot` marks it FAILED). Its file is recorded FAILED with the reason and
started again as its next attempt (`attempt` + 1, an execution of its own name), exactly as the
retry API does, so every file that was acknowledged reaches a final state once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from handlers.core.ids import execution_name
from handlers.core.status_store import RetryNotAllowedError, StatusStore
from provisioner.emulator import MOTO_ACCOUNT_ID
from provisioner.emulator.apply import AwsClients
from provisioner.emulator.snapshot import INTERRUPTED_ERROR, InterruptedExecution
from stacks import spec
from stacks.config import PipelineConfig

log = structlog.get_logger(__name__)

INTERRUPTED_MESSAGE = "the service stopped while the file was processed; started again"


def redrive_interrupted(
    config: PipelineConfig, clients: AwsClients, interrupted: Iterable[InterruptedExecution]
) -> int:
    """Start the next attempt of each file of `config` whose execution was interrupted."""
    state_machine = spec.pipeline_arns(config, MOTO_ACCOUNT_ID).state_machine
    store = StatusStore(spec.names(config, MOTO_ACCOUNT_ID).status_table, client=clients.dynamodb)
    started = 0
    for execution in interrupted:
        if execution.state_machine_arn != state_machine or "fileId" not in execution.input:
            continue
        file_id = str(execution.input["fileId"])
        try:
            item = store.get(file_id)
            if item is None or item.get("attempt", 1) != execution.input.get("attempt", 1):
                continue  # gone, or a later attempt already runs: started again once, not twice
            if not store.fail(
                file_id, stage="ingest", error_type=INTERRUPTED_ERROR, message=INTERRUPTED_MESSAGE
            ):
                continue  # it had reached a final state before the snapshot
            attempt = store.begin_retry(file_id, ttl_days=config.status_ttl_days)
            clients.stepfunctions.start_execution(
                stateMachineArn=state_machine,
                name=execution_name(file_id, attempt),
                input=json.dumps({**execution.input, "attempt": attempt}),
            )
        except (RetryNotAllowedError, ClientError, BotoCoreError) as error:
            log.warning("local.redrive_failed", file_id=file_id, error=str(error))
            continue
        log.info("local.file_redriven", file_id=file_id, attempt=attempt)
        started += 1
    return started
