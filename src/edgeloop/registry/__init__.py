"""Model registry: signed, content-addressed model versions and their deployment history.

* :mod:`~edgeloop.registry.manifest`: artifact ids, :class:`Manifest` and its canonical
  bytes. Pure; safe on a gateway. :mod:`~edgeloop.registry.changes`: manifest diffs.
* :mod:`~edgeloop.registry.model_registry`: :class:`ModelRegistry`, immutable and
  event-sourced (versions, aliases, promote, rollback, deployment events), for a hub
  store to persist.

Signing and verification live in :mod:`edgeloop.security.signing`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeloop._lazy import lazy_exports

if TYPE_CHECKING:
    from edgeloop.registry.changes import Change, diff
    from edgeloop.registry.from_training import choose_quantisation, describe
    from edgeloop.registry.manifest import (
        MANIFEST_SCHEMA,
        DataFingerprint,
        InputSchema,
        Manifest,
        ManifestError,
        QuantisationMeasurement,
        artifact_id,
        data_hash,
    )
    from edgeloop.registry.model_registry import (
        CHALLENGER,
        CHAMPION,
        DeploymentEvent,
        ModelRegistry,
        ModelVersion,
        RegistryError,
    )

_WHERE = {
    "Change": "changes",
    "diff": "changes",
    "choose_quantisation": "from_training",
    "describe": "from_training",
    "MANIFEST_SCHEMA": "manifest",
    "DataFingerprint": "manifest",
    "InputSchema": "manifest",
    "Manifest": "manifest",
    "ManifestError": "manifest",
    "QuantisationMeasurement": "manifest",
    "artifact_id": "manifest",
    "data_hash": "manifest",
    "CHALLENGER": "model_registry",
    "CHAMPION": "model_registry",
    "DeploymentEvent": "model_registry",
    "ModelRegistry": "model_registry",
    "ModelVersion": "model_registry",
    "RegistryError": "model_registry",
}

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "MANIFEST_SCHEMA",
    "Change",
    "DataFingerprint",
    "DeploymentEvent",
    "InputSchema",
    "Manifest",
    "ManifestError",
    "ModelRegistry",
    "ModelVersion",
    "QuantisationMeasurement",
    "RegistryError",
    "artifact_id",
    "choose_quantisation",
    "data_hash",
    "describe",
    "diff",
]

__getattr__, __dir__ = lazy_exports("edgeloop.registry", _WHERE, globals())
