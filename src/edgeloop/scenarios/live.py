"""Rich live view of a running scenario: per-gateway rates, anomalies, outbox depth,
link state and bytes saved, refreshed from the gateways' status files and the hub."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table


@dataclass(slots=True)
class LiveState:
    """What the view remembers between refreshes (to turn counters into rates)."""

    started: float = field(default_factory=time.monotonic)
    last: dict[str, tuple[float, int]] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (OSError, ValueError):
        return None


def render(
    title: str,
    statuses: dict[str, dict[str, Any] | None],
    hub: dict[str, Any],
    state: LiveState,
    duration_s: float,
    note: str = "",
    run_s: float | None = None,
) -> Group:
    """Build the renderable for one refresh."""
    now = time.monotonic()
    table = Table(expand=True)
    for col in (
        "gateway",
        "samples/s",
        "samples",
        "rejected",
        "windows",
        "incidents",
        "outbox",
        "link",
        "evicted",
        "rss MB",
    ):
        table.add_column(col, justify="right" if col != "gateway" else "left")
    naive = 0
    for name, st in sorted(statuses.items()):
        if st is None:
            table.add_row(name, "starting", "", "", "", "", "", "", "", "")
            continue
        n = int(st.get("samples_accepted", 0))
        prev = state.last.get(name)
        if prev is not None and now - prev[0] >= 0.4:
            state.rates[name] = (n - prev[1]) / (now - prev[0])
            state.last[name] = (now, n)
        elif prev is None:
            state.last[name] = (now, n)
        naive += int(st.get("bytes_naive", 0))
        link = "[green]up" if st.get("link_up", True) else "[red]DOWN"
        table.add_row(
            name,
            f"{state.rates.get(name, 0.0):,.0f}",
            f"{n:,}",
            f"{sum(int(v) for v in st.get('samples_rejected', {}).values()):,}",
            f"{int(st.get('windows', 0)):,}",
            f"{int(st.get('incidents', 0))}",
            f"{int(st.get('outbox_depth', 0))}",
            link,
            f"{int(st.get('evicted_samples', 0)):,}",
            f"{float(st.get('rss_mb_max', 0.0)):.0f}",
        )
    received = int(hub.get("bytes_received", 0))
    saved = f"{naive / received:,.0f}x smaller" if received else "-"
    elapsed = now - state.started if run_s is None else run_s
    head = (
        f"t = {max(elapsed, 0.0):5.1f} s / {duration_s:.0f} s   "
        f"hub: {int(hub.get('events', 0))} events, "
        f"{int(hub.get('summary_samples', 0)):,} samples summarised, "
        f"{received / 1e3:,.1f} kB received (naive JSON {naive / 1e6:,.1f} MB, {saved})"
    )
    if note:
        head += f"\n{note}"
    return Group(Panel(head, title=title), table)
