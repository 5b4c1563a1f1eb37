"""Run a gateway as a human starts it and read what it loaded and how big it got.

Imported as a plain module by the footprint tests (pytest puts this directory on
``sys.path``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

RSS_BOUND_MB = 80.0  # issue #2's bound on a gateway's peak resident memory

# ``python -m edgeloop.node --config node.yaml`` (the config is validated in a child
# interpreter, the node runs the plan), then the top-level modules it imported and its
# peak and private memory.
PROBE = r"""
import json, sys
from edgeloop.node.main import cli
from edgeloop.node.runtime import private_mb, rss_mb_max
rc = cli(["--config", sys.argv[1], "--duration", sys.argv[3], "--stats-out", sys.argv[2]])
print(json.dumps({"rc": rc, "modules": sorted({m.split(".")[0] for m in sys.modules}),
                  "rss": rss_mb_max(), "private": private_mb()}))
"""


def run_gateway(
    cfg: dict[str, Any], tmp_path: Path, duration_s: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the node of ``cfg`` for ``duration_s``; return (probe result, its stats)."""
    path = tmp_path / "gw1.yaml"
    path.write_text(yaml.safe_dump(cfg))
    stats_path = tmp_path / "stats.json"
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), str(stats_path), str(duration_s)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    res: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["rc"] == 0, out.stderr[-2000:]
    stats: dict[str, Any] = json.loads(stats_path.read_text())
    return res, stats
