"""The node's model directory: partial downloads, verified artifacts and the active pointer.

Layout under ``models.dir``::

    artifacts/sha256-<hex>.part       bytes being downloaded (written at their offsets)
    artifacts/sha256-<hex>.onnx       verified bytes (renamed from .part after the check)
    artifacts/sha256-<hex>.manifest   the manifest bytes as the hub signed them
    artifacts/sha256-<hex>.sig.json   the signature
    downloads.json                    per artifact: size, held ranges, verified, failures
    current.json                      the pointer: generation, active and previous models

Every file that describes state is replaced atomically (write a temporary file, fsync,
rename, fsync the directory), and bytes are on disk (fsync) before ``downloads.json``
says they are held, so a restart or power cut resumes exactly: held ranges are not
fetched again, a verified artifact is not checked again, and the active models are the
ones ``current.json`` names — written only after their ``.onnx`` files exist. A model
file is never activated unless it was verified: only :meth:`ModelStore.promote` (called
after a successful check) creates a ``.onnx`` file.

Blocking calls: the node runs them in its storage thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from edgeloop.desired.documents import ModelSlot
from edgeloop.desired.reconciler import ActualState, LocalArtifact
from edgeloop.errors import ConfigError

POINTER_FORMAT = "edgeloop.node-models/1"


def slot_to_dict(slot: ModelSlot) -> dict[str, Any]:
    return {
        "version": slot.version,
        "artifact": slot.artifact,
        "size": slot.size,
        "mode": slot.mode,
    }


def slot_from_dict(d: Mapping[str, Any]) -> ModelSlot:
    return ModelSlot(str(d["version"]), str(d["artifact"]), int(d["size"]), d["mode"])


class ModelStore:
    """Files of one node's models (see the module docstring).

    Args:
        root: the models directory (created if missing).
        node: the node id (for the :class:`ActualState`).
    """

    def __init__(self, root: str | Path, node: str) -> None:
        self.root = Path(root)
        self.node = node
        self.dir = self.root / "artifacts"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"models.dir: cannot create {self.dir} ({exc.strerror})") from None

    # -- paths ----------------------------------------------------------------------------
    def _stem(self, artifact: str) -> str:
        algo, _, hexdigest = artifact.partition(":")
        if (
            algo != "sha256"
            or len(hexdigest) != 64
            or not all(c in "0123456789abcdef" for c in hexdigest)
        ):
            raise ConfigError(f"artifact id {artifact!r}: expected sha256:<64 hex digits>")
        return f"sha256-{hexdigest}"

    def part_path(self, artifact: str) -> Path:
        return self.dir / f"{self._stem(artifact)}.part"

    def model_path(self, artifact: str) -> Path:
        return self.dir / f"{self._stem(artifact)}.onnx"

    def manifest_path(self, artifact: str) -> Path:
        return self.dir / f"{self._stem(artifact)}.manifest"

    def signature_path(self, artifact: str) -> Path:
        return self.dir / f"{self._stem(artifact)}.sig.json"

    def bytes_path(self, artifact: str) -> Path:
        """Where the artifact's bytes are: the verified file if it exists, else the part."""
        done = self.model_path(artifact)
        return done if done.exists() else self.part_path(artifact)

    # -- state ----------------------------------------------------------------------------
    def load(self) -> ActualState:
        """The actual state the files describe (an empty one on first start)."""
        pointer = _read_json(self.root / "current.json")
        downloads = _read_json(self.root / "downloads.json") or {}
        arts: dict[str, LocalArtifact] = {}
        for art, d in downloads.get("artifacts", {}).items():
            size = int(d["size"])
            held = tuple((int(a), int(b)) for a, b in d.get("held", ()))
            verified = bool(d.get("verified")) and self.model_path(art).exists()
            if self.model_path(art).exists():
                held = ((0, size),)  # renamed after a check; verified again if not marked
            elif not self.part_path(art).exists():
                held = ()
            arts[art] = LocalArtifact(
                art,
                size,
                held,
                verified,
                int(d.get("failures", 0)),
                str(d.get("last_error", "")),
            )
        if not pointer:
            return ActualState(self.node, artifacts=MappingProxyType(arts))
        if pointer.get("format") != POINTER_FORMAT:
            raise ConfigError(f"{self.root / 'current.json'}: not a {POINTER_FORMAT} pointer")
        prev = pointer.get("previous")
        return ActualState(
            node=self.node,
            generation=int(pointer["generation"]),
            active=tuple(slot_from_dict(s) for s in pointer["active"]),
            previous=slot_from_dict(prev) if prev else None,
            pipeline_digest=str(pointer.get("pipeline_digest", "")),
            artifacts=MappingProxyType(arts),
        )

    def save_downloads(self, artifacts: Mapping[str, LocalArtifact]) -> None:
        """Record what is held and checked (atomically)."""
        doc = {
            "artifacts": {
                a.artifact: {
                    "size": a.size,
                    "held": [list(r) for r in a.held],
                    "verified": a.verified,
                    "failures": a.failures,
                    "last_error": a.last_error,
                }
                for a in artifacts.values()
            }
        }
        _write_atomic(self.root / "downloads.json", json.dumps(doc).encode())

    def save_pointer(self, actual: ActualState) -> None:
        """Make ``actual``'s models the active ones: one atomic rename of ``current.json``."""
        for slot in actual.active:
            if not self.model_path(slot.artifact).exists():
                raise ConfigError(
                    f"models: {slot.version} ({slot.artifact}) is not verified on disk"
                )
        doc = {
            "format": POINTER_FORMAT,
            "generation": actual.generation,
            "active": [slot_to_dict(s) for s in actual.active],
            "previous": slot_to_dict(actual.previous) if actual.previous else None,
            "pipeline_digest": actual.pipeline_digest,
        }
        _write_atomic(self.root / "current.json", json.dumps(doc).encode())

    # -- bytes ----------------------------------------------------------------------------
    def write_range(self, artifact: str, size: int, start: int, data: bytes) -> None:
        """Write ``data`` at ``start`` of the partial file and make it durable."""
        if start < 0 or start + len(data) > size:
            raise ConfigError(
                f"artifact {artifact}: bytes [{start}, {start + len(data)}) beyond its size {size}"
            )
        fd = os.open(self.part_path(artifact), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            view = memoryview(data)
            while view:  # pwrite may write less than asked
                n = os.pwrite(fd, view, start)
                view, start = view[n:], start + n
            os.fsync(fd)
        finally:
            os.close(fd)

    def save_signed(self, artifact: str, manifest: bytes, signature: bytes) -> None:
        """Keep the manifest bytes and signature (JSON) the hub served for ``artifact``."""
        _write_atomic(self.manifest_path(artifact), manifest)
        _write_atomic(self.signature_path(artifact), signature)

    def has_signed(self, artifact: str) -> bool:
        return self.manifest_path(artifact).exists() and self.signature_path(artifact).exists()

    def promote(self, artifact: str) -> Path:
        """After a successful check: the partial file becomes the model file (atomic)."""
        part, done = self.part_path(artifact), self.model_path(artifact)
        if part.exists():
            os.replace(part, done)
            _fsync_dir(self.dir)
        return done

    def drop(self, artifact: str, *, keep_signed: bool = False) -> None:
        """Delete the artifact's bytes (and, unless ``keep_signed``, its manifest)."""
        paths = [self.part_path(artifact), self.model_path(artifact)]
        if not keep_signed:
            paths += [self.manifest_path(artifact), self.signature_path(artifact)]
        for p in paths:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable model state ({exc})") from None


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
