"""Ed25519 signatures over model manifests and artifacts.

The hub holds a private key; nodes are configured with the public keys they trust. A
signature covers the manifest's canonical bytes *and* the artifact's content address::

    message = b"edgeloop.model-signature/1\\n" + len(manifest) (8 bytes, big endian)
              + manifest bytes + artifact id ("sha256:<hex>", ASCII)

so neither can be swapped independently (the manifest names its artifact too; signing
both keeps the statement explicit). A node checks, in this order, and each failure has
its own error: the key is trusted (:class:`UnknownKeyError`), the manifest bytes are a
well-formed canonical manifest (:class:`~edgeloop.registry.manifest.ManifestError`; the
artifact id is read from them), the signature is valid (:class:`BadSignatureError`), and
the artifact's bytes hash to the manifest's id with its size
(:class:`ArtifactMismatchError`).

Only :func:`load_private_key`, :func:`save_private_key`, :func:`load_public_key` and
:func:`save_public_key` touch files; everything else is pure.

>>> from edgeloop.registry.manifest import artifact_id
>>> key = PrivateKey.generate()
>>> sig = key.sign(b'{"manifest":1}', artifact_id(b"onnx"))
>>> trusted = trust(key.public_key)
>>> verify_signature(b'{"manifest":1}', artifact_id(b"onnx"), sig, trusted) == key.key_id
True
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edgeloop.errors import ModelError
from edgeloop.registry.manifest import Manifest, artifact_id

CONTEXT = b"edgeloop.model-signature/1\n"
ALGORITHM = "ed25519"


class VerificationError(ModelError):
    """An artifact must not be activated; ``reason`` says which check failed."""

    reason = "verification"


class UnknownKeyError(VerificationError):
    """The signature names a key the node does not trust."""

    reason = "unknown_key"


class BadSignatureError(VerificationError):
    """The signature does not match the manifest and artifact id."""

    reason = "bad_signature"


class ArtifactMismatchError(VerificationError):
    """The artifact's bytes do not hash to (or are not the size of) the manifest's."""

    reason = "hash_mismatch"


class KeyFileError(ModelError):
    """A key cannot be read, parsed or written."""


def signed_message(manifest_bytes: bytes, artifact: str) -> bytes:
    """The exact bytes that are signed (see the module docstring)."""
    return (
        CONTEXT
        + len(manifest_bytes).to_bytes(8, "big")
        + bytes(manifest_bytes)
        + artifact.encode("ascii")
    )


@dataclass(frozen=True, slots=True)
class Signature:
    """A detached signature.

    Attributes:
        key_id: id of the signing key (:attr:`PublicKey.key_id`).
        value: the 64 signature bytes.
        algorithm: always ``"ed25519"``.
    """

    key_id: str
    value: bytes
    algorithm: str = ALGORITHM

    def to_dict(self) -> dict[str, str]:
        """JSON-able form (the value in base64)."""
        return {
            "algorithm": self.algorithm,
            "key_id": self.key_id,
            "value": base64.b64encode(self.value).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "signature") -> Signature:
        """Inverse of :meth:`to_dict`; raise :class:`VerificationError` naming the field."""
        for key in ("algorithm", "key_id", "value"):
            if not isinstance(data.get(key), str):
                raise VerificationError(f"{source}.{key}: expected a string, got {data.get(key)!r}")
        if data["algorithm"] != ALGORITHM:
            raise VerificationError(
                f"{source}.algorithm: {data['algorithm']!r} is not supported (only {ALGORITHM!r})"
            )
        try:
            value = base64.b64decode(data["value"], validate=True)
        except binascii.Error as exc:
            raise VerificationError(f"{source}.value: not base64 ({exc})") from exc
        return cls(data["key_id"], value)


@dataclass(frozen=True, slots=True)
class PublicKey:
    """An Ed25519 public key (the 32 raw bytes)."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != 32:
            raise KeyFileError(f"public key: expected 32 raw bytes, got {len(self.raw)}")

    @property
    def key_id(self) -> str:
        """``"ed25519:"`` and the first 16 hex digits of sha256 of the raw key."""
        return f"{ALGORITHM}:{hashlib.sha256(self.raw).hexdigest()[:16]}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's signature of ``message``."""
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def to_pem(self) -> bytes:
        """SubjectPublicKeyInfo PEM."""
        return Ed25519PublicKey.from_public_bytes(self.raw).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @classmethod
    def from_pem(cls, data: bytes, source: str = "public key") -> PublicKey:
        """Parse a PEM public key; :class:`KeyFileError` unless it is Ed25519."""
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError) as exc:
            raise KeyFileError(f"{source}: not a PEM public key ({exc})") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFileError(f"{source}: not an Ed25519 key ({type(key).__name__})")
        return cls(key.public_bytes_raw())

    def __repr__(self) -> str:
        return f"PublicKey({self.key_id})"


class PrivateKey:
    """An Ed25519 signing key. Its repr never shows the secret."""

    __slots__ = ("_key", "public_key")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_key = PublicKey(key.public_key().public_bytes_raw())

    @classmethod
    def generate(cls) -> PrivateKey:
        """A new random key."""
        return cls(Ed25519PrivateKey.generate())

    @property
    def key_id(self) -> str:
        """The id of the public half."""
        return self.public_key.key_id

    def sign(self, manifest_bytes: bytes, artifact: str) -> Signature:
        """Sign manifest bytes together with an artifact id."""
        return Signature(self.key_id, self._key.sign(signed_message(manifest_bytes, artifact)))

    def sign_manifest(self, manifest: Manifest) -> tuple[bytes, Signature]:
        """The manifest's canonical bytes and their signature with its artifact id."""
        data = manifest.canonical_bytes()
        return data, self.sign(data, manifest.artifact)

    def to_pem(self, password: bytes | None = None) -> bytes:
        """PKCS#8 PEM, encrypted when ``password`` is given."""
        enc: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc
        )

    @classmethod
    def from_pem(
        cls, data: bytes, password: bytes | None = None, source: str = "private key"
    ) -> PrivateKey:
        """Parse a PEM private key; :class:`KeyFileError` naming the problem."""
        try:
            key = serialization.load_pem_private_key(data, password=password)
        except (ValueError, TypeError) as exc:
            raise KeyFileError(f"{source}: cannot load PEM private key ({exc})") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{source}: not an Ed25519 key ({type(key).__name__})")
        return cls(key)

    def __repr__(self) -> str:
        return f"PrivateKey({self.key_id})"


def trust(*keys: PublicKey | Iterable[PublicKey]) -> Mapping[str, PublicKey]:
    """A read-only key id → key map of trusted public keys."""
    flat: list[PublicKey] = []
    for k in keys:
        flat.extend([k] if isinstance(k, PublicKey) else k)
    return MappingProxyType({k.key_id: k for k in flat})


def verify_signature(
    manifest_bytes: bytes, artifact: str, signature: Signature, trusted: Mapping[str, PublicKey]
) -> str:
    """Check that a trusted key signed ``manifest_bytes`` with ``artifact``; return its id.

    Raises:
        UnknownKeyError: the signing key is not in ``trusted`` (both named).
        BadSignatureError: the signature does not verify.
    """
    key = trusted.get(signature.key_id)
    if key is None:
        raise UnknownKeyError(
            f"signature.key_id: {signature.key_id!r} is not a trusted key "
            f"(trusted: {sorted(trusted)})"
        )
    if not key.verify(signed_message(manifest_bytes, artifact), signature.value):
        raise BadSignatureError(
            f"signature: does not verify with key {signature.key_id} over the manifest "
            f"({len(manifest_bytes)} bytes) and artifact {artifact}: altered or not signed "
            "by this key"
        )
    return key.key_id


def verify_manifest(
    manifest_bytes: bytes, signature: Signature, trusted: Mapping[str, PublicKey]
) -> Manifest:
    """Verify the signature over manifest bytes (with the artifact id they name); parse them.

    Raises:
        UnknownKeyError: the signing key is not trusted (checked first).
        ManifestError: the bytes are not a canonical manifest.
        BadSignatureError: see :func:`verify_signature`.
    """
    if signature.key_id not in trusted:
        verify_signature(manifest_bytes, "", signature, trusted)  # raises UnknownKeyError
    manifest = Manifest.from_bytes(manifest_bytes)
    verify_signature(manifest_bytes, manifest.artifact, signature, trusted)
    return manifest


def check_artifact(
    manifest: Manifest,
    data: bytes | None = None,
    *,
    digest: str | None = None,
    size: int | None = None,
) -> None:
    """Check artifact bytes (or a digest and size computed while downloading) against ``manifest``.

    Raises:
        ArtifactMismatchError: size or hash differ (expected and actual both named).
        ValueError: neither ``data`` nor ``digest`` and ``size`` were given.
    """
    if data is not None:
        digest, size = artifact_id(data), len(data)
    if digest is None or size is None:
        raise ValueError("check_artifact: pass data, or digest and size")
    if size != manifest.size:
        raise ArtifactMismatchError(
            f"artifact: {size} bytes, manifest {manifest.version} says {manifest.size}"
        )
    if digest != manifest.artifact:
        raise ArtifactMismatchError(
            f"artifact: hash mismatch for {manifest.version}: got {digest}, "
            f"manifest says {manifest.artifact}"
        )


def verify_artifact(
    manifest_bytes: bytes,
    signature: Signature,
    trusted: Mapping[str, PublicKey],
    data: bytes,
) -> Manifest:
    """Everything a node checks before activating a model; return the manifest.

    Raises:
        ManifestError, UnknownKeyError, BadSignatureError, ArtifactMismatchError.
    """
    manifest = verify_manifest(manifest_bytes, signature, trusted)
    check_artifact(manifest, data)
    return manifest


# -- the only I/O: key files -------------------------------------------------------------------
def save_private_key(path: str | Path, key: PrivateKey, password: bytes | None = None) -> None:
    """Write ``key`` as PEM, readable by the owner only (created with mode 0600)."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.to_pem(password))
    except OSError as exc:
        raise KeyFileError(f"{p}: cannot write private key ({exc.strerror or exc})") from exc


def load_private_key(path: str | Path, password: bytes | None = None) -> PrivateKey:
    """Read a PEM private key file."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{p}: cannot read private key ({exc.strerror or exc})") from exc
    return PrivateKey.from_pem(data, password, source=str(p))


def save_public_key(path: str | Path, key: PublicKey) -> None:
    """Write ``key`` as PEM."""
    p = Path(path)
    try:
        p.write_bytes(key.to_pem())
    except OSError as exc:
        raise KeyFileError(f"{p}: cannot write public key ({exc.strerror or exc})") from exc


def load_public_key(path: str | Path) -> PublicKey:
    """Read a PEM public key file."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{p}: cannot read public key ({exc.strerror or exc})") from exc
    return PublicKey.from_pem(data, source=str(p))
