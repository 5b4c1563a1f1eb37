"""Verify a downloaded model in a child process, so ``cryptography`` stays out of the gateway.

:func:`verify_in_child` runs ``python -m edgeloop.security.verify`` (the same interpreter)
on the files of one artifact and returns its verdict. A child costs one interpreter start
(about 0.35 s on a 2-core machine) per model version; importing ``cryptography`` in the
gateway instead would cost ~8 MB resident for the rest of its life (``docs/learning-loop.md``).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from edgeloop.errors import EdgeloopError


class VerifierError(EdgeloopError):
    """The verification child could not run (not a verdict on the artifact)."""


async def verify_in_child(
    trusted: list[str], manifest: str, signature: str, artifact: str, timeout_s: float = 60.0
) -> dict[str, Any]:
    """Run ``python -m edgeloop.security.verify`` on the files; its verdict as a dict.

    Raises:
        VerifierError: the child did not start, timed out or printed no verdict.
    """
    cmd = [sys.executable, "-m", "edgeloop.security.verify"]
    for k in trusted:
        cmd += ["--trusted", k]
    cmd += ["--manifest", manifest, "--signature", signature, "--artifact", artifact]
    try:
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    except OSError as exc:
        raise VerifierError(f"verifier: cannot start {sys.executable} ({exc})") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise VerifierError(f"verifier: no verdict within {timeout_s} s") from None
    lines = out.decode(errors="replace").strip().splitlines()
    try:
        verdict = json.loads(lines[-1]) if lines else None
    except ValueError:
        verdict = None
    if not isinstance(verdict, dict) or "ok" not in verdict:
        tail = err.decode(errors="replace").strip()[-500:]
        raise VerifierError(f"verifier: exit {proc.returncode} without a verdict: {tail}")
    return verdict
