"""What a gateway needs of the learning loop (reconcile, sketches, evidence) stays light.

Verification needs ``cryptography`` (about 8 MB resident, see docs/learning-loop.md); the
rest must not pull it in, nor the hub's or the training side's stacks.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("cryptography", "sklearn", "scipy", "onnx", "pydantic", "yaml", "fastapi", "sqlalchemy")

PROBE = r"""
import json, sys
from edgeloop.desired import reconcile, resolve, missing_ranges
from edgeloop.drift import Sketch, quantile_edges
from edgeloop.registry.manifest import Manifest
from edgeloop.rollout import measure, desired
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def test_gateway_side_of_the_loop_imports_no_heavy_stack() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    loaded = set(json.loads(out.stdout))
    assert not loaded & set(HEAVY), f"gateway-side modules loaded {sorted(loaded & set(HEAVY))}"


def test_importing_the_security_package_defers_cryptography() -> None:
    probe = "import sys, edgeloop.security; print('cryptography' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
