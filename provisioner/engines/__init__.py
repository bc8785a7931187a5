"""Engines turn a `PipelineConfig` into (or out of) real infrastructure, behind one interface.

Engines are named by import reference so that worker processes can load them by name.
"""

from __future__ import annotations

from typing import Final

ENGINE_REFERENCES: Final[dict[str, str]] = {
    "local": "provisioner.engines.local.engine:LocalEngine",
    "pulumi": "provisioner.engines.pulumi.engine:PulumiEngine",
}

# Engines with a half in the service's own process (see provisioner.engines.base.EngineHost).
ENGINE_HOSTS: Final[dict[str, str]] = {
    "local": "provisioner.engines.local.engine:LocalHost",
}
