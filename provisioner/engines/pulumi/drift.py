"""A refresh's resource steps → the drift it found (`ResourceDrift`), for docs/architecture.md §8.

A refresh reads every resource of the stack back from AWS and compares it with the stack's
record. The engine reports each resource's step when it has read it (`ResOutputsEvent`): its op is
`refresh` (some CLI versions report the outcome instead: `update`, `delete`), `old` the record,
`new` what AWS holds (none: the resource is gone) and `diffs` / `detailed_diff` the properties
that differ. Providers and component resources hold nothing in AWS and are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import pulumi.automation as auto

from provisioner.engines.base import ResourceDrift

# The ops of a refresh's resource steps that can mean drift.
_REFRESH_OPS: Final = frozenset({"refresh", "update", "delete"})


def resource_drift(meta: auto.StepEventMetadata) -> ResourceDrift | None:
    """What one resource step of a refresh found; None if the resource is as recorded."""
    op = meta.op.value if isinstance(meta.op, auto.OpType) else str(meta.op)
    if op not in _REFRESH_OPS or meta.type.startswith("pulumi:"):
        return None
    if meta.old is not None and meta.old.custom is False:
        return None  # a component resource: nothing of its own in AWS
    if op == "delete" or (op == "refresh" and meta.old is not None and meta.new is None):
        return ResourceDrift(meta.urn, meta.type, "create")  # gone: restoring re-creates it
    attributes = _differing_attributes(meta)
    if not attributes:
        return None
    return ResourceDrift(meta.urn, meta.type, "update", attributes)


def _differing_attributes(meta: auto.StepEventMetadata) -> tuple[str, ...]:
    # The engine's own diff first; property paths (`tags.Owner`) count as their top attribute.
    named = list(meta.diffs or []) + list((meta.detailed_diff or {}).keys())
    if not named and meta.old is not None and meta.new is not None:
        named = _differing_keys(meta.old.outputs or {}, meta.new.outputs or {})
    return tuple(sorted({_top_attribute(path) for path in named if path}))


def _differing_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    return [key for key in {*old, *new} if old.get(key) != new.get(key)]


def _top_attribute(path: str) -> str:
    for separator in (".", "["):
        path = path.split(separator, 1)[0]
    return path
