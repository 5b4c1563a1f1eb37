"""Security: the hub's Ed25519 key pair and the signatures nodes verify before activating.

Node identity, enrolment and mTLS come later; today this package signs model artifacts
(:mod:`edgeloop.security.signing`). Names load lazily: importing the package does not
load ``cryptography`` (about 8 MB resident) until a key or a check is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeloop._lazy import lazy_exports

if TYPE_CHECKING:
    from edgeloop.security.signing import (
        ArtifactMismatchError,
        BadSignatureError,
        KeyFileError,
        PrivateKey,
        PublicKey,
        Signature,
        UnknownKeyError,
        VerificationError,
        check_artifact,
        load_private_key,
        load_public_key,
        save_private_key,
        save_public_key,
        trust,
        verify_artifact,
        verify_manifest,
        verify_signature,
    )

__all__ = [
    "ArtifactMismatchError",
    "BadSignatureError",
    "KeyFileError",
    "PrivateKey",
    "PublicKey",
    "Signature",
    "UnknownKeyError",
    "VerificationError",
    "check_artifact",
    "load_private_key",
    "load_public_key",
    "save_private_key",
    "save_public_key",
    "trust",
    "verify_artifact",
    "verify_manifest",
    "verify_signature",
]

__getattr__, __dir__ = lazy_exports(
    "edgeloop.security", dict.fromkeys(__all__, "signing"), globals()
)
