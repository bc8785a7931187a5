"""What applying one resource takes (`Plan`), what all resources share (`Context`), and the
read-compare helpers every resource renderer uses: only what differs from the model is written."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Literal

from botocore.exceptions import ClientError

from provisioner.emulator.apply.clients import AwsClients
from provisioner.emulator.apply.code import handlers_archive
from stacks import spec
from stacks.config import PipelineConfig

ResourceStep = Literal["create", "update", "same", "delete"]


@dataclass(frozen=True)
class PlannedResource:
    """One resource the applier manages: its physical name and type."""

    name: str
    type: str


@dataclass
class Plan:
    """What applying one resource takes: the writes for everything that differs."""

    exists: bool
    changes: list[str] = field(default_factory=list)
    actions: list[Callable[[], object]] = field(default_factory=list)

    def change(self, what: str | Sequence[str], action: Callable[[], object]) -> None:
        """`action` writes `what`: one attribute, or several that one write sets."""
        if self.exists:
            self.changes.extend([what] if isinstance(what, str) else what)
        self.actions.append(action)

    @property
    def step(self) -> ResourceStep:
        if not self.exists:
            return "create"
        return "update" if self.changes else "same"


class Context:
    """Everything the resources of one environment share during one apply or destroy."""

    def __init__(
        self,
        config: PipelineConfig,
        clients: AwsClients | None,
        account_id: str,
        retry: spec.RetryPolicy | None = None,
    ) -> None:
        self.config = config
        self._clients = clients
        self.account_id = account_id
        self.names = spec.names(config, account_id)
        self.arns = spec.pipeline_arns(config, account_id)
        self.tags = config.resource_tags()
        self.retry = retry or spec.RetryPolicy()
        self._queue_urls: dict[str, str] = {}

    @property
    def clients(self) -> AwsClients:
        if self._clients is None:
            raise RuntimeError("this context only describes resources")
        return self._clients

    @cached_property
    def code(self) -> bytes:
        return handlers_archive()

    def queue_url(self, name: str) -> str:
        if name not in self._queue_urls:
            self._queue_urls[name] = self.clients.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        return self._queue_urls[name]


class Resource(ABC):
    """One resource of the model's inventory, as the emulator holds it (with its parts)."""

    kind: ClassVar[str]  # for messages: "queue", "function" …

    def __init__(self, name: str, type: str) -> None:
        self.name = name
        self.type = type  # the inventory's type token

    @abstractmethod
    def plan(self, ctx: Context) -> Plan:
        """Read the resource and list the writes that make it match the model."""

    @abstractmethod
    def delete(self, ctx: Context) -> bool:
        """Delete the resource; False if it did not exist."""


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def absent(exc: ClientError, *codes: str) -> bool:
    return error_code(exc) in codes


def contains(desired: Any, actual: Any) -> bool:
    """`actual` has every field of `desired` with the same value (lists: same length, in order).

    Services add fields of their own to what they return; only ours are compared.
    """
    if isinstance(desired, Mapping):
        return isinstance(actual, Mapping) and all(
            key in actual and contains(value, actual[key]) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(actual, list)
            and len(desired) == len(actual)
            and all(contains(d, a) for d, a in zip(desired, actual, strict=True))
        )
    return bool(desired == actual)


def json_attribute(value: str | None) -> Any:
    return json.loads(value) if value else None


def tag_diff(
    current: Mapping[str, str], desired: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """Tags to set and tag keys to remove; `aws:` tags belong to AWS and are left alone."""
    to_set = {key: value for key, value in desired.items() if current.get(key) != value}
    to_remove = [key for key in current if key not in desired and not key.startswith("aws:")]
    return to_set, to_remove


def plan_tags(
    plan: Plan,
    current: Mapping[str, str],
    desired: Mapping[str, str],
    tag: Callable[[dict[str, str]], object],
    untag: Callable[[list[str]], object],
) -> None:
    to_set, to_remove = tag_diff(current, desired)

    def retag() -> None:
        if to_set:
            tag(to_set)
        if to_remove:
            untag(to_remove)

    if to_set or to_remove:
        plan.change("tags", retag)
