"""Ed25519 signing: what verifies, and exactly which check fails when something was altered."""

from __future__ import annotations

import doctest
import importlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from edgeloop.registry import DataFingerprint, InputSchema, Manifest, ManifestError, artifact_id
from edgeloop.security import (
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
)


def onnx_bytes(version: str) -> bytes:
    return f"ONNX model {version}".encode() * 10


def make_manifest(version: str, **over: Any) -> Manifest:
    data = onnx_bytes(version)
    fields: dict[str, Any] = {
        "version": version,
        "artifact": artifact_id(data),
        "size": len(data),
        "kind": "pca_t2q",
        "input_schema": InputSchema(("a", "b"), "factory"),
        "training_data": DataFingerprint("ab" * 32, 0, 10, ("gw1",), 100),
        "metrics": {"recall": 0.97},
    }
    fields.update(over)
    return Manifest(**fields)


KEY = PrivateKey.generate()
TRUSTED = trust(KEY.public_key)


def signed(version: str = "v1") -> tuple[bytes, Signature, bytes]:
    data, sig = KEY.sign_manifest(make_manifest(version))
    return data, sig, onnx_bytes(version)


def test_doctest() -> None:
    result = doctest.testmod(importlib.import_module("edgeloop.security.signing"))
    assert result.attempted > 0 and result.failed == 0


def test_a_signed_artifact_verifies_and_returns_its_manifest() -> None:
    data, sig, onnx = signed()
    m = verify_artifact(data, sig, TRUSTED, onnx)
    assert m == make_manifest("v1") and sig.key_id == KEY.key_id
    assert sig.key_id.startswith("ed25519:") and len(sig.value) == 64


def test_an_unknown_key_is_named_with_the_trusted_ones() -> None:
    other = PrivateKey.generate()
    data, sig = other.sign_manifest(make_manifest("v1"))
    with pytest.raises(UnknownKeyError, match=rf"{other.key_id}.*not a trusted key") as info:
        verify_artifact(data, sig, TRUSTED, onnx_bytes("v1"))
    assert KEY.key_id in str(info.value) and info.value.reason == "unknown_key"


def test_any_changed_manifest_byte_breaks_the_signature() -> None:
    data, sig, onnx = signed()
    obj = json.loads(data)
    obj["metrics"]["recall"] = 0.99
    forged = make_manifest("v1", metrics=obj["metrics"]).canonical_bytes()
    with pytest.raises(BadSignatureError, match="does not verify") as info:
        verify_artifact(forged, sig, TRUSTED, onnx)
    assert info.value.reason == "bad_signature"


def test_a_signature_cannot_be_moved_to_another_artifact() -> None:
    data, sig, _ = signed("v1")
    data2 = make_manifest("v2").canonical_bytes()
    with pytest.raises(BadSignatureError):
        verify_manifest(data2, sig, TRUSTED)
    flipped = bytes([sig.value[0] ^ 1]) + sig.value[1:]
    with pytest.raises(BadSignatureError):
        verify_manifest(data, Signature(sig.key_id, flipped), TRUSTED)


def test_artifact_bytes_must_match_hash_and_size() -> None:
    data, sig, onnx = signed()
    tampered = bytes([onnx[0] ^ 0xFF]) + onnx[1:]
    with pytest.raises(ArtifactMismatchError, match="hash mismatch for v1: got sha256:") as info:
        verify_artifact(data, sig, TRUSTED, tampered)
    assert info.value.reason == "hash_mismatch"
    with pytest.raises(ArtifactMismatchError, match=rf"{len(onnx) - 1} bytes, manifest v1 says"):
        verify_artifact(data, sig, TRUSTED, onnx[:-1])
    m = verify_manifest(data, sig, TRUSTED)
    check_artifact(m, digest=m.artifact, size=m.size)  # a digest computed while downloading
    with pytest.raises(ValueError, match="pass data, or digest and size"):
        check_artifact(m)


def test_malformed_manifest_bytes_fail_as_manifest_errors() -> None:
    _, sig, _ = signed()
    with pytest.raises(ManifestError, match="not UTF-8 JSON"):
        verify_manifest(b"garbage", sig, TRUSTED)


def test_verification_errors_share_one_base() -> None:
    for cls in (UnknownKeyError, BadSignatureError, ArtifactMismatchError):
        assert issubclass(cls, VerificationError)


def test_signature_round_trips_and_bad_fields_are_named() -> None:
    _, sig, _ = signed()
    assert Signature.from_dict(json.loads(json.dumps(sig.to_dict()))) == sig
    with pytest.raises(VerificationError, match=r"sig\.algorithm: 'rsa' is not supported"):
        Signature.from_dict({**sig.to_dict(), "algorithm": "rsa"}, "sig")
    with pytest.raises(VerificationError, match=r"signature\.value: not base64"):
        Signature.from_dict({**sig.to_dict(), "value": "***"})
    with pytest.raises(VerificationError, match=r"signature\.key_id: expected a string"):
        Signature.from_dict({"algorithm": "ed25519", "value": ""})


def test_keys_round_trip_through_pem_files(tmp_path: Path) -> None:
    save_private_key(tmp_path / "hub.pem", KEY)
    save_public_key(tmp_path / "hub.pub", KEY.public_key)
    assert os.stat(tmp_path / "hub.pem").st_mode & 0o077 == 0
    loaded = load_private_key(tmp_path / "hub.pem")
    assert loaded.key_id == KEY.key_id
    assert load_public_key(tmp_path / "hub.pub") == KEY.public_key
    # A key loaded from disk signs what the original's public key verifies.
    data, sig = loaded.sign_manifest(make_manifest("v1"))
    verify_manifest(data, sig, TRUSTED)


def test_encrypted_private_keys_need_their_password(tmp_path: Path) -> None:
    save_private_key(tmp_path / "hub.pem", KEY, password=b"s3cret")
    assert load_private_key(tmp_path / "hub.pem", b"s3cret").key_id == KEY.key_id
    with pytest.raises(KeyFileError, match=r"hub\.pem: cannot load PEM private key"):
        load_private_key(tmp_path / "hub.pem")


def test_key_file_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match=r"missing\.pem: cannot read private key"):
        load_private_key(tmp_path / "missing.pem")
    (tmp_path / "junk.pub").write_bytes(b"not a key")
    with pytest.raises(KeyFileError, match=r"junk\.pub: not a PEM public key"):
        load_public_key(tmp_path / "junk.pub")
    with pytest.raises(KeyFileError, match="expected 32 raw bytes"):
        PublicKey(b"short")


def test_the_private_key_repr_hides_the_secret() -> None:
    assert repr(KEY) == f"PrivateKey({KEY.key_id})"
    assert "BEGIN" not in repr(KEY)
