"""Accounting of a chaos scenario, from what was produced and what the hub stored.

Rules (``docs/chaos.md``):

* ``produced``: samples the gateways' simulators emit over the run, computed here by
  running the same seeded simulator (it is a pure function of time), not read from a
  gateway counter — a gateway that died and replayed must still add up;
* ``delivered``: samples covered by summary rows in the hub's store (PostgreSQL), each
  (node, sensor, period) counted once;
* ``duplicates``: samples of summary rows stored more than once for the same
  (node, sensor, period);
* ``evicted``: samples (and entries) the outbox policy evicted, by class, from the
  outbox's own counters (kept in its file, so they survive kill -9);
* ``rejected``: samples the node refused at its input (corrupt sensor data), by reason;
* ``evicted_delivered``: samples of evicted entries that the hub stored all the same
  (sent before the budget evicted them: a publish in flight or queued by the MQTT
  client); found by matching the outbox's audit trail of evicted sequence numbers
  with the hub's ledger, so they are counted once, as delivered;
* ``lost`` = produced − delivered − (evicted − evicted_delivered) − rejected; anything
  but 0 is a bug;
* ``order_violations``: ledger entries of a (node, epoch) committed after an entry with
  a higher sequence number (commit order: the ledger's ``commit_order``, drawn under the
  node's row lock — migration 0005; the hub's receive clock on a store without it);
* ``drain_s``: from the end of the last fault until the hub committed the last summary
  row of data produced before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect, text

from edgeloop.node.plan import NodePlan
from edgeloop.outbox.sqlite import read_evictions
from edgeloop.sim.build import build_sim

CLASSES = ("raw", "summary", "event", "alarm")


def produced_samples(plan: NodePlan, start_ns: int, duration_s: float) -> int:
    """Samples the plan's simulator emits in ``[start, start + duration)``."""
    src = plan.sim
    if src is None or plan.floor is None:
        return 0
    sim = build_sim(plan.floor, src.faults, seed=src.seed, start_ns=start_ns)
    until = start_ns + int(duration_s * 1e9)
    total = 0
    while sim.now_ns < until:
        total += len(sim.step(min(1_000_000_000, until - sim.now_ns)))
    return total


@dataclass
class NodeCounts:
    """What the hub's store holds of one node."""

    summary_samples: int = 0
    duplicates: int = 0
    order_violations: int = 0
    ledger_entries: int = 0
    events: int = 0
    last_commit_ns: int | None = None
    ledger_seqs: set[int] = field(default_factory=set)
    ledger_rejected: int = 0
    """Entries admitted to the ledger whose payload was dead-lettered."""
    unknown_upto_seq: int = 0
    """The hub met the node's epoch first with ``after_seq`` > 0 and took everything up
    to it as acknowledged elsewhere (``hub/schema.py``)."""
    missing_seqs: list[int] = field(default_factory=list)
    """Sequence numbers below the highest stored that the ledger lacks (evicted, or
    never stored: the first 50)."""


@dataclass
class StoreCounts:
    nodes: dict[str, NodeCounts] = field(default_factory=dict)
    dead_letters: dict[str, int] = field(default_factory=dict)
    dead_letter_examples: list[dict[str, Any]] = field(default_factory=list)
    order_basis: str = "commit_order"


def read_store(db_url: str, nodes: list[str], recovery_ns: int | None) -> StoreCounts:
    """Count, per node, what the hub stored (see the module docstring)."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            insp = inspect(conn)
            cols = {c["name"] for c in insp.get_columns("received")}
            pg = conn.dialect.name == "postgresql"  # SQLite leaves commit_order NULL
            basis = "commit_order" if pg and "commit_order" in cols else "received_ns"
            has_events = "events" in insp.get_table_names()
            out = StoreCounts(order_basis=basis)
            for node in nodes:
                out.nodes[node] = _node_counts(conn, node, basis, recovery_ns, has_events)
            rows = conn.execute(
                text("SELECT reason, count(*) FROM dead_letters GROUP BY reason")
            ).all()
            out.dead_letters = {str(r): int(n) for r, n in rows}
            examples = conn.execute(
                text("SELECT node, reason, field, detail FROM dead_letters ORDER BY id LIMIT 20")
            ).all()
            out.dead_letter_examples = [
                {"node": n, "reason": r, "field": f, "detail": str(d)[:200]}
                for n, r, f, d in examples
            ]
            return out
    finally:
        engine.dispose()


def _node_counts(
    conn: Any, node: str, basis: str, recovery_ns: int | None, has_events: bool
) -> NodeCounts:
    p = {"n": node}
    c = NodeCounts()
    c.summary_samples = int(
        conn.execute(
            text("SELECT coalesce(sum(count), 0) FROM summaries WHERE node = :n"), p
        ).scalar_one()
    )
    c.duplicates = int(
        conn.execute(
            text(
                "SELECT coalesce(sum(count), 0) FROM ("
                " SELECT count, row_number() OVER (PARTITION BY sensor, t0_ns ORDER BY id) AS rn"
                " FROM summaries WHERE node = :n) AS x WHERE rn > 1"
            ),
            p,
        ).scalar_one()
    )
    c.order_violations = int(
        conn.execute(
            text(
                "SELECT count(*) FROM ("
                " SELECT seq, max(seq) OVER (PARTITION BY epoch ORDER BY "
                f" {basis}, seq ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before"
                " FROM received WHERE node = :n) AS x WHERE before > seq"
            ),
            p,
        ).scalar_one()
    )
    c.ledger_seqs = {
        int(r[0]) for r in conn.execute(text("SELECT seq FROM received WHERE node = :n"), p)
    }
    c.ledger_entries = len(c.ledger_seqs)
    c.ledger_rejected = int(
        conn.execute(
            text("SELECT count(*) FROM received WHERE node = :n AND rejected"), p
        ).scalar_one()
    )
    c.unknown_upto_seq = int(
        conn.execute(
            text("SELECT coalesce(max(unknown_upto_seq), 0) FROM incarnations WHERE node = :n"),
            p,
        ).scalar_one()
    )
    top = max(c.ledger_seqs, default=0)
    c.missing_seqs = sorted(set(range(1, top + 1)) - c.ledger_seqs)[:50]
    if has_events:
        c.events = int(
            conn.execute(text("SELECT count(*) FROM events WHERE node = :n"), p).scalar_one()
        )
    if recovery_ns is not None:
        last = conn.execute(
            text(
                "SELECT max(r.received_ns) FROM received AS r JOIN summaries AS s"
                " ON s.node = r.node AND s.epoch = r.epoch AND s.seq = r.seq"
                " WHERE r.node = :n AND s.t1_ns <= :t"
            ),
            {"n": node, "t": recovery_ns},
        ).scalar_one()
        c.last_commit_ns = None if last is None else int(last)
    return c


def evicted_delivered(outbox_path: Path, ledger_seqs: set[int]) -> int:
    """Samples of entries the outbox evicted that the hub stored anyway."""
    if not outbox_path.exists():
        return 0
    log = read_evictions(outbox_path)
    return sum(samples for seq, (_, samples) in log.items() if seq in ledger_seqs)


def evicted_by_class(stats: dict[str, Any]) -> dict[str, dict[str, int]]:
    """``{class: {"entries", "samples"}}`` from a gateway's final stats."""
    ev = stats.get("evicted", {})
    return {
        k: {
            "entries": int(ev.get(k, {}).get("entries", 0)),
            "samples": int(ev.get(k, {}).get("samples", 0)),
        }
        for k in CLASSES
    }


__all__ = [
    "CLASSES",
    "NodeCounts",
    "StoreCounts",
    "evicted_by_class",
    "evicted_delivered",
    "produced_samples",
    "read_store",
]
