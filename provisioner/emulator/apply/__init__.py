"""Apply one environment's resource model (`stacks.spec`) to the emulator with boto3.

The local engine's counterpart of `stacks.pipeline`: both only render the model, so the names,
properties, policies, environments and state machine are the same. Resources are created,
updated in place or deleted one by one, in the model's inventory order; every resource is read
first and only what differs is written, so applying twice changes nothing.

  clients   the boto3 clients of one region
  code      the functions' code archive
  plan      Plan / Context / Resource and the read-compare helpers
  storage   log groups, queues, the bucket, the status table
  compute   roles, functions, the state machine, the ingest rule and event source mapping
  drivers   apply, plan (preview/refresh) and destroy
  progress  the per-resource report the local engine turns into engine events

What the emulator leaves out, each forced by moto, is the one table `EMULATOR_DIFFERENCES` of
tests/stacks/test_engines_agree.py (no API Gateway, no Powertools layer or LoggingConfig, no
TLS-only bucket policy, moto's own SQS → Lambda delivery off). moto never returns
`EventBridgeConfiguration` from GetBucketNotificationConfiguration, so the bucket renderer
re-puts it on every apply (an idempotent write) without reporting a change.
"""

from provisioner.emulator.apply.clients import AwsClients
from provisioner.emulator.apply.code import handlers_archive
from provisioner.emulator.apply.drivers import (
    apply_pipeline,
    destroy_pipeline,
    plan_pipeline,
    planned_resources,
)
from provisioner.emulator.apply.plan import PlannedResource
from provisioner.emulator.apply.progress import Phase, ProgressSink, ResourceProgress
from provisioner.emulator.apply.storage import lifecycle_rule, queue_attributes, table_create_args

__all__ = [
    "AwsClients",
    "Phase",
    "PlannedResource",
    "ProgressSink",
    "ResourceProgress",
    "apply_pipeline",
    "destroy_pipeline",
    "handlers_archive",
    "lifecycle_rule",
    "plan_pipeline",
    "planned_resources",
    "queue_attributes",
    "table_create_args",
]
