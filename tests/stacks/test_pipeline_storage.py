"""The bucket, its EventBridge wiring, the queues and the status table, as registered."""

from __future__ import annotations

import pytest

from stacks import spec
from stacks.config import PipelineConfig
from tests.stacks.documents import as_list, parsed, statements
from tests.stacks.mocks import (
    ACCOUNT_ID,
    BUCKET,
    BUCKET_ENCRYPTION,
    BUCKET_LIFECYCLE,
    BUCKET_NOTIFICATION,
    BUCKET_POLICY,
    BUCKET_PUBLIC_ACCESS,
    BUCKET_VERSIONING,
    EVENT_RULE,
    EVENT_TARGET,
    FUNCTION,
    QUEUE,
    QUEUE_POLICY,
    TABLE,
    Deployment,
    RegisteredResource,
)

# --- bucket ------------------------------------------------------------------------------------


def _bucket(deployment: Deployment) -> RegisteredResource:
    return deployment.one(BUCKET)


def _bucket_config(deployment: Deployment, typ: str) -> RegisteredResource:
    """A bucket sub-resource, checked to apply to this environment's bucket."""
    resource = deployment.one(typ)
    assert resource.inputs["bucket"] == _bucket(deployment).outputs["bucket"]
    return resource


def test_bucket_name_is_the_environments_and_unique_to_account_and_region(
    deployment: Deployment, config: PipelineConfig
) -> None:
    bucket = _bucket(deployment)
    assert bucket.inputs["bucket"] == spec.names(config, ACCOUNT_ID).bucket
    assert bucket.inputs["bucket"].startswith("p-acme-dev-")
    assert bucket.inputs["bucket"] != spec.names(config, "210987654321").bucket


def test_versioned_bucket_can_be_destroyed(deployment: Deployment) -> None:
    # force_destroy empties the bucket, every version included, on `pulumi destroy`.
    assert _bucket(deployment).inputs["forceDestroy"] is True


def test_versioning_is_enabled(deployment: Deployment) -> None:
    versioning = _bucket_config(deployment, BUCKET_VERSIONING)
    assert versioning.inputs["versioningConfiguration"] == {"status": "Enabled"}


@pytest.mark.parametrize(
    ("fixture", "days"), [("deployment", 90), ("custom_deployment", 30)], ids=["default", "custom"]
)
def test_lifecycle_moves_every_object_to_glacier(
    request: pytest.FixtureRequest, fixture: str, days: int
) -> None:
    deployment: Deployment = request.getfixturevalue(fixture)
    rules = _bucket_config(deployment, BUCKET_LIFECYCLE).inputs["rules"]
    whole_bucket = [rule for rule in rules if rule["filter"] == {"prefix": ""}]
    assert len(whole_bucket) == 1
    rule = whole_bucket[0]
    assert rule["status"] == "Enabled"
    assert rule["transitions"] == [{"days": days, "storageClass": "GLACIER"}]
    assert rule["noncurrentVersionTransitions"] == [
        {"noncurrentDays": days, "storageClass": "GLACIER"}
    ]
    # Old versions expire only after GLACIER's 90-day minimum storage duration.
    assert rule["noncurrentVersionExpiration"] == {"noncurrentDays": days + 90}
    # Nothing else expires current objects (uploads and results stay).
    assert "expiration" not in rule


def test_lifecycle_expires_only_abandoned_work(deployment: Deployment) -> None:
    rules = _bucket_config(deployment, BUCKET_LIFECYCLE).inputs["rules"]
    expiring = [rule for rule in rules if "expiration" in rule]
    assert [rule["filter"] for rule in expiring] == [{"prefix": spec.WORK_PREFIX}]
    assert len({rule["id"] for rule in rules}) == len(rules)


def test_bucket_is_encrypted_with_aes256(deployment: Deployment) -> None:
    encryption = _bucket_config(deployment, BUCKET_ENCRYPTION)
    assert encryption.inputs["rules"] == [
        {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}
    ]


def test_public_access_is_blocked_entirely(deployment: Deployment) -> None:
    block = _bucket_config(deployment, BUCKET_PUBLIC_ACCESS).inputs
    assert block["blockPublicAcls"] is True
    assert block["blockPublicPolicy"] is True
    assert block["ignorePublicAcls"] is True
    assert block["restrictPublicBuckets"] is True


def test_bucket_policy_denies_requests_without_tls(deployment: Deployment) -> None:
    bucket_arn = _bucket(deployment).outputs["arn"]
    document = parsed(_bucket_config(deployment, BUCKET_POLICY))
    insecure = [
        statement
        for statement in statements(document)
        if statement.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
    ]
    assert len(insecure) == 1
    deny = insecure[0]
    assert deny["Effect"] == "Deny"
    assert deny["Principal"] == "*"
    assert as_list(deny["Action"]) == ["s3:*"]
    assert sorted(as_list(deny["Resource"])) == [bucket_arn, f"{bucket_arn}/*"]
    assert all(statement["Effect"] == "Deny" for statement in statements(document))


def test_bucket_sends_its_events_to_eventbridge(deployment: Deployment) -> None:
    assert _bucket_config(deployment, BUCKET_NOTIFICATION).inputs["eventbridge"] is True


def test_bucket_configuration_changes_are_applied_one_at_a_time(deployment: Deployment) -> None:
    """S3 aborts concurrent changes to one bucket's configuration, so they form a chain."""
    chain = [
        BUCKET_PUBLIC_ACCESS,
        BUCKET_ENCRYPTION,
        BUCKET_VERSIONING,
        BUCKET_LIFECYCLE,
        BUCKET_POLICY,
        BUCKET_NOTIFICATION,
    ]
    for before, after in zip(chain, chain[1:], strict=False):
        assert deployment.one(before).urn in deployment.one(after).registration.dependencies


# --- EventBridge → ingest queue ------------------------------------------------------------------


def _ingest_queue(deployment: Deployment, config: PipelineConfig) -> RegisteredResource:
    return deployment.named(QUEUE, spec.names(config, ACCOUNT_ID).ingest_queue)


def test_rule_matches_objects_created_under_incoming_in_this_bucket(
    deployment: Deployment, config: PipelineConfig
) -> None:
    rule = deployment.one(EVENT_RULE)
    assert rule.inputs["name"] == spec.names(config, ACCOUNT_ID).ingest_rule
    pattern = parsed(rule, "eventPattern")
    assert pattern["source"] == ["aws.s3"]
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["bucket"]["name"] == [_bucket(deployment).outputs["bucket"]]
    assert pattern["detail"]["object"]["key"] == [{"prefix": "incoming/"}]
    # The default event bus: S3's EventBridge notifications go nowhere else.
    assert "eventBusName" not in rule.inputs


def test_rule_targets_the_ingest_queue_with_a_message_group(
    deployment: Deployment, config: PipelineConfig
) -> None:
    target = deployment.one(EVENT_TARGET)
    assert target.inputs["rule"] == deployment.one(EVENT_RULE).outputs["name"]
    assert target.inputs["arn"] == _ingest_queue(deployment, config).outputs["arn"]
    # A FIFO target needs a message group; every ingest message shares one.
    assert target.inputs["sqsTarget"] == {"messageGroupId": spec.INGEST_MESSAGE_GROUP}
    assert "eventBusName" not in target.inputs


def test_only_the_rule_may_send_to_the_ingest_queue(
    deployment: Deployment, config: PipelineConfig
) -> None:
    queue = _ingest_queue(deployment, config)
    queue_policy = deployment.one(QUEUE_POLICY)
    assert queue_policy.inputs["queueUrl"] == queue.outputs["url"]
    (statement,) = statements(parsed(queue_policy))
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert as_list(statement["Action"]) == ["sqs:SendMessage"]
    assert as_list(statement["Resource"]) == [queue.outputs["arn"]]
    assert statement["Condition"] == {
        "ArnEquals": {"aws:SourceArn": deployment.one(EVENT_RULE).outputs["arn"]}
    }


# --- queues --------------------------------------------------------------------------------------


def test_ingest_queue_is_fifo_with_content_deduplication(
    deployment: Deployment, config: PipelineConfig
) -> None:
    queue = _ingest_queue(deployment, config).inputs
    assert queue["name"].endswith(".fifo")
    assert queue["fifoQueue"] is True
    assert queue["contentBasedDeduplication"] is True


@pytest.mark.parametrize("fixture", ["deployment", "custom_deployment"])
def test_ingest_visibility_timeout_covers_six_consumer_timeouts(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    deployment: Deployment = request.getfixturevalue(fixture)
    config: PipelineConfig = request.getfixturevalue(fixture.replace("deployment", "config"))
    names = spec.names(config, ACCOUNT_ID)
    consumer = deployment.named(FUNCTION, names.functions["ingest"])
    queue = deployment.named(QUEUE, names.ingest_queue)
    assert queue.inputs["visibilityTimeoutSeconds"] >= 6 * consumer.inputs["timeout"]


def test_ingest_queue_redrives_to_its_dlq_after_three_receives(
    deployment: Deployment, config: PipelineConfig
) -> None:
    names = spec.names(config, ACCOUNT_ID)
    dlq = deployment.named(QUEUE, names.ingest_dlq)
    redrive = parsed(_ingest_queue(deployment, config), "redrivePolicy")
    assert redrive == {"deadLetterTargetArn": dlq.outputs["arn"], "maxReceiveCount": 3}


def test_every_dead_letter_queue_is_fifo(deployment: Deployment, config: PipelineConfig) -> None:
    names = spec.names(config, ACCOUNT_ID)
    dlq_names = [names.ingest_dlq, *(names.stage_dlqs[stage] for stage in spec.STAGE_FUNCTIONS)]
    assert len(set(dlq_names)) == 4
    for name in dlq_names:
        dlq = deployment.named(QUEUE, name).inputs
        assert name.endswith("-dlq.fifo")
        assert dlq["fifoQueue"] is True
        assert dlq["contentBasedDeduplication"] is True
        # A DLQ keeps messages longer than its source queue does (14 days, SQS's maximum).
        assert dlq["messageRetentionSeconds"] == 14 * 24 * 3600
        assert "redrivePolicy" not in dlq


def test_queues_are_encrypted(deployment: Deployment) -> None:
    queues = deployment.of_type(QUEUE)
    assert len(queues) == 5
    assert all(queue.inputs["sqsManagedSseEnabled"] is True for queue in queues)


# --- status table --------------------------------------------------------------------------------


def _table(deployment: Deployment) -> RegisteredResource:
    return deployment.one(TABLE)


def test_table_is_keyed_by_file_id_and_billed_per_request(
    deployment: Deployment, config: PipelineConfig
) -> None:
    table = _table(deployment).inputs
    assert table["name"] == spec.names(config, ACCOUNT_ID).status_table
    assert table["hashKey"] == "fileId"
    assert "rangeKey" not in table
    assert table["billingMode"] == "PAY_PER_REQUEST"


def test_table_attributes_are_exactly_the_key_attributes(deployment: Deployment) -> None:
    # DynamoDB rejects an attribute definition that no key or index uses.
    table = _table(deployment).inputs
    defined = {attribute["name"]: attribute["type"] for attribute in table["attributes"]}
    keys = {table["hashKey"]} | {
        key["attributeName"]
        for index in table["globalSecondaryIndexes"]
        for key in index["keySchemas"]
    }
    assert set(defined) == keys
    assert set(defined.values()) == {"S"}


def test_table_expires_items_on_expiration_time(deployment: Deployment) -> None:
    assert _table(deployment).inputs["ttl"] == {"attributeName": "expirationTime", "enabled": True}


def test_table_has_point_in_time_recovery_and_encryption(deployment: Deployment) -> None:
    table = _table(deployment).inputs
    assert table["pointInTimeRecovery"] == {"enabled": True}
    assert table["serverSideEncryption"] == {"enabled": True}


def test_table_can_be_destroyed(deployment: Deployment) -> None:
    assert _table(deployment).inputs["deletionProtectionEnabled"] is False


def test_table_has_the_object_key_index(deployment: Deployment) -> None:
    assert _table(deployment).inputs["globalSecondaryIndexes"] == [
        {
            "name": "objectKey-index",
            "keySchemas": [
                {"attributeName": "objectKey", "keyType": "HASH"},
                {"attributeName": "receivedAt", "keyType": "RANGE"},
            ],
            "projectionType": "ALL",
        }
    ]
