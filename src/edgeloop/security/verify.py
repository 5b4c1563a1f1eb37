"""Verify a downloaded model in a short-lived child process: ``python -m edgeloop.security.verify``.

A gateway must check hash, size and signature before it activates a model, but
``cryptography`` costs ~8 MB resident (``docs/learning-loop.md``) that a gateway would then
carry for the rest of its life, for a check it makes once per model version. The node
therefore runs this module in a child interpreter (the same ``sys.executable``) and reads
one JSON line from its standard output::

    python -m edgeloop.security.verify --trusted hub.pem --manifest M --signature S --artifact A
    {"ok": true, "version": "v2", "artifact": "sha256:...", "key_id": "ed25519:..."}
    {"ok": false, "reason": "bad_signature", "error": "signature: does not verify ..."}

Exit status: 0 verified, 1 refused (``reason`` is one of ``unknown_key``,
``bad_signature``, ``hash_mismatch``, ``bad_manifest``, ``key_file``, ``io``), 2 usage.
``--signature`` is a JSON file holding :meth:`~edgeloop.security.signing.Signature.to_dict`;
``--manifest`` holds the manifest's canonical bytes exactly as signed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeloop.errors import ModelError


def verify_files(
    trusted: Sequence[str | Path],
    manifest: str | Path,
    signature: str | Path,
    artifact: str | Path,
) -> dict[str, Any]:
    """Check ``artifact`` against its signed ``manifest``; the result the child prints.

    Never raises for a failed check: the answer says ``ok`` and, if not, the ``reason``
    (the failed check) and the ``error`` message naming what and where.
    """
    from edgeloop.registry.manifest import ManifestError
    from edgeloop.security.signing import (
        KeyFileError,
        Signature,
        VerificationError,
        load_public_key,
        trust,
        verify_artifact,
    )

    try:
        keys = trust([load_public_key(p) for p in trusted])
    except KeyFileError as exc:
        return {"ok": False, "reason": "key_file", "error": str(exc)}
    try:
        manifest_bytes = Path(manifest).read_bytes()
        sig_text = Path(signature).read_text()
        data = Path(artifact).read_bytes()
    except OSError as exc:
        return {"ok": False, "reason": "io", "error": f"{exc.filename}: {exc.strerror or exc}"}
    try:
        sig_doc = json.loads(sig_text)
        if not isinstance(sig_doc, dict):
            raise VerificationError(f"{signature}: expected a JSON object")
        sig = Signature.from_dict(sig_doc, source=str(signature))
        m = verify_artifact(manifest_bytes, sig, keys, data)
    except json.JSONDecodeError as exc:
        return {"ok": False, "reason": "bad_signature", "error": f"{signature}: not JSON ({exc})"}
    except VerificationError as exc:
        return {"ok": False, "reason": exc.reason, "error": str(exc)}
    except ManifestError as exc:
        return {"ok": False, "reason": "bad_manifest", "error": f"{manifest}: {exc}"}
    except ModelError as exc:  # anything else the checks refuse
        return {"ok": False, "reason": "verification", "error": str(exc)}
    return {"ok": True, "version": m.version, "artifact": m.artifact, "key_id": sig.key_id}


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgeloop.security.verify", description=__doc__)
    ap.add_argument("--trusted", action="append", required=True, help="trusted public key (PEM)")
    ap.add_argument("--manifest", required=True, help="manifest bytes as signed")
    ap.add_argument("--signature", required=True, help="signature (JSON)")
    ap.add_argument("--artifact", required=True, help="the model file")
    a = ap.parse_args(argv)
    result = verify_files(a.trusted, a.manifest, a.signature, a.artifact)
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(cli())
