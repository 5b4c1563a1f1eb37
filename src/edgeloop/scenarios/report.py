"""The demo report: reconcile gateways with the hub and score detections.

Counting rules (issue #2):

* ``samples_accounted`` = samples covered by summaries stored at the hub + samples the
  gateways' outbox policy counted as evicted; ``lost`` = ingested − accounted.
* ``duplicates`` = samples the hub would have counted twice: summary rows stored more
  than once for the same (node, sensor, period) — read from the stored data, not from a
  counter, so a broken dedupe would show here.
* a fault is detected when an anomaly event of its machine is stored at the hub with a
  time in [start, end + one window]; precision is the share of stored events that fall
  in such an interval.
* ``bytes_uplinked`` is every byte the gateways put on the uplink (request line,
  headers, body; retransmissions included); ``bytes_naive`` is one JSON message per
  sample.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeloop.hub.store import HubStore
from edgeloop.scenarios.plan import FloorPlan
from edgeloop.scenarios.scoring import EventTime, FaultInterval, score_events

REPORT_KEYS = (
    "samples_ingested",
    "samples_accounted",
    "lost",
    "duplicates",
    "faults_injected",
    "faults_detected",
    "recall",
    "precision",
    "bytes_naive",
    "bytes_uplinked",
    "reduction",
    "action_latency_ms_p50",
    "action_latency_ms_p99",
    "partitions",
    "gateway_rss_mb_max",
)


def build_report(
    plan: FloorPlan, store: HubStore, gw_stats: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    ingested = sum(int(s.get("samples_accepted", 0)) for s in gw_stats.values())
    evicted = sum(int(s.get("evicted_samples", 0)) for s in gw_stats.values())
    totals = store.totals()["overall"]
    summarised = int(totals["samples"])
    accounted = summarised + evicted
    faults = [
        FaultInterval(f["machine"], f["kind"], int(f["start_ns"]), int(f["end_ns"]))
        for s in gw_stats.values()
        for f in s.get("faults", [])
    ]
    events = [EventTime(e.machine, e.t_end_ns) for e in store.events(limit=1_000_000)]
    score = score_events(faults, events, window_ns=int(plan.window_s * 1e9))
    naive = sum(int(s.get("bytes_naive", 0)) for s in gw_stats.values())
    uplinked = sum(int(s.get("bytes_uplinked", 0)) for s in gw_stats.values())
    lat = np.array(
        [x for s in gw_stats.values() for x in s.get("latency_samples_ms", [])], dtype=float
    )
    rejected = {name: s.get("samples_rejected", {}) for name, s in gw_stats.items()}
    return {
        "samples_ingested": ingested,
        "samples_accounted": accounted,
        "lost": ingested - accounted,
        "duplicates": int(store.duplicate_summary_samples()),
        "faults_injected": score.faults,
        "faults_detected": score.detected,
        "recall": round(score.recall, 4),
        "precision": round(score.precision, 4),
        "bytes_naive": naive,
        "bytes_uplinked": uplinked,
        "reduction": round(naive / uplinked, 1) if uplinked else None,
        "action_latency_ms_p50": round(float(np.percentile(lat, 50)), 3) if lat.size else None,
        "action_latency_ms_p99": round(float(np.percentile(lat, 99)), 3) if lat.size else None,
        "partitions": len(plan.partitions),
        "gateway_rss_mb_max": max(
            (float(s.get("rss_mb_max", 0.0)) for s in gw_stats.values()), default=0.0
        ),
        # context beyond the required keys
        "gateway_private_mb_max": max(
            (float(s.get("private_mb", 0.0)) for s in gw_stats.values()), default=0.0
        ),
        "gateways": len(plan.gateways),
        "sensors": plan.sensors,
        "duration_s": plan.duration_s,
        "partition_windows_s": [list(p) for p in plan.partitions],
        "samples_summarised_at_hub": summarised,
        "samples_evicted": evicted,
        "samples_rejected": rejected,
        "samples_corrupted_by_chaos": sum(
            int(s.get("samples_corrupted", 0)) for s in gw_stats.values()
        ),
        "samples_rejected_total": sum(sum(int(v) for v in r.values()) for r in rejected.values()),
        "events_stored": score.events,
        "events_true": score.true_events,
        "faults_by_kind": {
            k: {"detected": d, "injected": n} for k, (d, n) in score.by_kind.items()
        },
        "missed_faults": [
            {"machine": f.machine, "kind": f.kind, "start_ns": f.start_ns} for f in score.missed
        ],
        "false_events": [{"machine": e.machine, "t_ns": e.t_ns} for e in score.false_events],
        "hub_duplicates_skipped": int(totals.get("duplicates", 0)),
        "send_failures": sum(int(s.get("send_failures", 0)) for s in gw_stats.values()),
        "actions_fired": sum(int(s.get("relay_commands", 0)) for s in gw_stats.values()),
        "gateways_drained": all(bool(s.get("drained")) for s in gw_stats.values()),
    }
