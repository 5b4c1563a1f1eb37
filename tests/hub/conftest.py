"""Fixtures and builders of the hub tests: real stores on SQLite (memory or a tmp file)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from edgeloop.hub.store import HubStore, IngestItem
from edgeloop.telemetry.records import Event, Severity, SummaryBatch

SEC = 1_000_000_000


def summary_batch(
    sensors: Sequence[str], t0s: Sequence[int], counts: Sequence[int], period_ns: int = SEC
) -> SummaryBatch:
    """One row per (sensor, t0) pair given; mean = row number (so rows are told apart)."""
    names = tuple(dict.fromkeys(sensors))
    idx = np.array([names.index(s) for s in sensors], dtype=np.uint32)
    n = len(sensors)
    mean = np.arange(n, dtype=np.float32)
    return SummaryBatch(
        sensor=idx,
        t0_ns=np.asarray(t0s, dtype=np.int64),
        t1_ns=np.asarray(t0s, dtype=np.int64) + period_ns,
        count=np.asarray(counts, dtype=np.int64),
        mean=mean,
        std=np.full(n, 0.5, np.float32),
        min=mean - 1,
        max=mean + 1,
        sensor_names=names,
    )


def event(
    machine: str = "m01", t_start_ns: int = 10 * SEC, node: str = "gw1", **kw: object
) -> Event:
    args: dict[str, object] = {
        "node": node,
        "machine": machine,
        "sensor": f"{machine}.vib_x",
        "severity": Severity.ANOMALY,
        "t_start_ns": t_start_ns,
        "t_end_ns": t_start_ns + SEC // 2,
        "detected_ns": t_start_ns + SEC,
        "score": 0.9,
        "threshold": 0.7,
        "detector": "iforest",
        "reason": "rms up",
        "features": {"rms": 2.5, "kurtosis": 4.0},
    }
    args.update(kw)
    return Event(**args)  # type: ignore[arg-type]


def summaries_item(seq: int, batch: SummaryBatch) -> IngestItem:
    return IngestItem(seq, 1, "summaries", batch.samples, 100 + len(batch), decoded=batch)


def events_item(seq: int, events: list[Event]) -> IngestItem:
    return IngestItem(seq, 2, "events", 0, 50 * len(events), decoded=events)


@pytest.fixture
def store() -> Iterator[HubStore]:
    s = HubStore("sqlite://")
    s.create_all()
    yield s
    s.close()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'hub.db'}"


@pytest.fixture
def file_store(db_url: str) -> Iterator[HubStore]:
    s = HubStore(db_url)
    s.create_all()
    yield s
    s.close()
