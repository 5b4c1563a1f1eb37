"""Benchmark: hub ingest of events into PostgreSQL beside a raw psycopg COPY of the same rows.

Workload (seeded): ``batches`` uplink batches of one node, each ``entries`` events
entries of ``events`` events, encoded as a node sends them (``codec.encode_events`` in
``codec.encode_batch``). Every event has 8 features and a reason like the decide stage
writes; every 10th carries raw context (3 sensors x 20 samples).

* edgeloop: ``IngestService.ingest`` of each encoded batch, the hub's real receive
  path: decode the batch and its entries, validate, admit the entries to the ledger
  (idempotent on (node, epoch, seq)), insert the event rows and the entries' blocks,
  move the watermark, commit; the ack exists only after the commit (``fsync`` and
  ``synchronous_commit`` as the server has them: on by default).
* peer: the same event rows, ready-made as Python tuples before the clock starts,
  written with psycopg's ``COPY ... FROM STDIN (FORMAT BINARY)`` (``write_row``) into
  the same table (same schema, same indexes), one transaction per batch. No decoding,
  no ledger, no validation: the ceiling of putting these rows into this table.

Each repetition runs both sides on a fresh database of the server (created, migrated
by ``HubStore.open``, dropped after), alternating which side goes first. The figures
are wall time of the ingest calls (ours) and of the COPY + commit (peer).

Run: ``python -m edgeloop.bench.hub_bench`` (or ``edgeloop bench``).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import queue
import secrets
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from edgeloop.hub.columns import ColumnRows
from edgeloop.hub.event_blocks import EVENT_COLUMN_KEYS, event_column_rows
from edgeloop.outbox.base import Entry, Priority
from edgeloop.telemetry import codec
from edgeloop.telemetry.frame import Frame
from edgeloop.telemetry.records import Event, Severity
from edgeloop.transport.base import Batch

LOCAL_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
"""The default server: the local PostgreSQL with trust auth (a maintenance database)."""
NODE = "gw1"
SEC = 1_000_000_000
_FEATURES = ("rms", "peak", "crest", "kurtosis", "skew", "band_lo", "band_mid", "band_hi")


def workload(
    batches: int, entries: int, events: int, seed: int = 7, node: str = NODE
) -> list[bytes]:
    """The encoded batches of one node's workload (see the module docstring)."""
    rng = np.random.default_rng(seed)
    machines = [f"m{m:02d}" for m in range(18)]
    sensors = [f"{m}.{s}" for m in machines for s in ("vib_x", "vib_y", "vib_z", "temp")]
    out: list[bytes] = []
    seq = 0
    for b in range(batches):
        items = []
        for _ in range(entries):
            seq += 1
            t0 = 1_700_000_000 * SEC + seq * 60 * SEC
            evs = []
            for i in range(events):
                m = int(rng.integers(len(machines)))
                score = float(rng.uniform(0.7, 1.0))
                raw = None
                raw_sensors: tuple[str, ...] = ()
                if i % 10 == 0:
                    raw_sensors = tuple(sensors[4 * m : 4 * m + 3])
                    k = np.arange(60)
                    raw = Frame.from_arrays(k % 3, t0 + k * SEC // 20, rng.normal(size=60))
                evs.append(
                    Event(
                        node=node,
                        machine=machines[m],
                        sensor=sensors[4 * m + int(rng.integers(4))],
                        severity=Severity.ALARM if score > 0.95 else Severity.ANOMALY,
                        t_start_ns=t0 + i * SEC // 2,
                        t_end_ns=t0 + i * SEC // 2 + SEC,
                        detected_ns=t0 + i * SEC // 2 + 2 * SEC,
                        score=score,
                        threshold=0.7,
                        detector="robust_z",
                        reason=f"robust_z score {score:.2f} >= 0.70 (most deviant: rms)",
                        features=dict(zip(_FEATURES, rng.normal(size=8).tolist(), strict=True)),
                        raw=raw,
                        raw_sensors=raw_sensors,
                    )
                )
            payload = codec.encode_events(evs)
            items.append(Entry(seq, Priority.EVENT, "events", payload, 0, t0))
        batch = Batch(node, seq - entries, tuple(items), {"events": seq}, b + 1, epoch=1)
        out.append(codec.encode_batch(batch))
    return out


def peer_rows(batches: list[bytes]) -> list[list[tuple[Any, ...]]]:
    """The event rows the hub stores for ``batches``, as tuples (the peer's input)."""
    rows = []
    for data in batches:
        batch = codec.decode_batch(data)
        out: list[tuple[Any, ...]] = []
        for e in batch.entries:
            cols = codec.decode_events(e.payload)
            events = event_column_rows(batch.node, e.seq, cols, batch.epoch)["events"]
            assert isinstance(events, ColumnRows)
            out.extend(events.tuples())
        rows.append(out)
    return rows


@contextlib.contextmanager
def fresh_database(server: str) -> Iterator[str]:
    """A new database ``edgeloop_bench_<random>`` on ``server`` (a SQLAlchemy URL of a
    maintenance database), dropped on exit; yields its URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = make_url(server)
    name = f"edgeloop_bench_{secrets.token_hex(4)}"
    eng = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with eng.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield admin.set(database=name).render_as_string(hide_password=False)
        finally:
            with eng.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        eng.dispose()


def _ours_stream(url: str, batches: list[bytes], ready: Any, start: Any) -> tuple[float, float]:
    """One hub worker: ingest ``batches`` through ``IngestService``; (start, end) times."""
    from edgeloop.hub.app import IngestService
    from edgeloop.hub.store import HubStore

    store = HubStore(url)  # migrated by the caller
    try:
        service = IngestService(store)
        store.ping()
        ready.put(True)
        start.wait()
        t0 = time.monotonic()
        for data in batches:
            ack = service.ingest(data)
            if ack.rejected or ack.duplicates:
                raise RuntimeError(f"hub bench: batch not stored whole: {ack}")
        return t0, time.monotonic()
    finally:
        store.close()


def _peer_stream(
    url: str, rows: list[list[tuple[Any, ...]]], ready: Any, start: Any
) -> tuple[float, float]:
    """One raw client: COPY each batch's rows, commit; (start, end) times."""
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    types = ["text", "int8", "int8", "int4", *["text"] * 6, *["int8"] * 3, "float8", "float8"]
    sql = f"COPY events ({', '.join(EVENT_COLUMN_KEYS)}) FROM STDIN (FORMAT BINARY)"
    with psycopg.connect(
        host=u.host, port=u.port or 5432, user=u.username, dbname=u.database, password=u.password
    ) as conn:
        ready.put(True)
        start.wait()
        t0 = time.monotonic()
        for batch in rows:
            with conn.cursor() as cur, cur.copy(sql) as copy:
                copy.set_types(types)
                for row in batch:
                    copy.write_row(row)
            conn.commit()
        return t0, time.monotonic()


def _worker(target: Callable[..., tuple[float, float]], args: tuple[Any, ...], out: Any) -> None:
    try:
        out.put(target(*args))
    except BaseException as exc:  # reported to the parent, which raises it
        out.put(exc)


def _run(target: Callable[..., tuple[float, float]], work: list[Any], url: str) -> float:
    """Run ``target(url, w, ready, start)`` for every ``w`` of ``work`` at once: in this
    process for one, else one process each (as hub processes on a shared subscription),
    released together. Returns the wall time from the first start to the last end."""
    if len(work) == 1:
        q: queue.SimpleQueue[bool] = queue.SimpleQueue()
        t0, t1 = target(url, work[0], q, _Go())
        return t1 - t0
    ctx = multiprocessing.get_context("spawn")
    ready, out, start = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_worker, args=(target, (url, w, ready, start), out)) for w in work]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            ready.get(timeout=120)
        start.set()
        results = [out.get(timeout=600) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=60)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise errors[0]
    return float(max(r[1] for r in results) - min(r[0] for r in results))


class _Go:
    """A start signal that is already given (one stream, in this process)."""

    def wait(self) -> None:
        return None


def _count(url: str) -> int:
    from sqlalchemy import create_engine, text

    eng = create_engine(url)
    try:
        with eng.connect() as c:
            return int(c.execute(text("SELECT count(*) FROM events")).scalar_one())
    finally:
        eng.dispose()


def _side(server: str, side: str, work: list[Any], n_events: int) -> float:
    """Events/s of one side on a fresh database (migrated like every hub's)."""
    from edgeloop.hub.store import HubStore

    with fresh_database(server) as url:
        HubStore.open(url).close()
        target = _ours_stream if side == "ours" else _peer_stream
        spent = _run(target, work, url)
        stored = _count(url)
    if stored != n_events:
        raise RuntimeError(f"hub bench: {side}: {stored} events stored of {n_events}")
    return n_events / spent


def bench_hub_ingest(
    server: str = LOCAL_PG,
    *,
    batches: int = 20,
    entries: int = 20,
    events: int = 100,
    streams: int = 2,
    reps: int = 3,
) -> dict[str, float]:
    """Measure hub ingest of events into PostgreSQL against a raw COPY of the same rows.

    Args:
        server: SQLAlchemy URL of a maintenance database on the server to use; each
            repetition creates and drops its own databases there.
        batches: uplink batches per node and repetition (one transaction each).
        entries: events entries per batch.
        events: events per entry.
        streams: nodes sending at once, each served by its own process on both sides
            (ours: a hub process with its own store, as hub processes sharing one MQTT
            subscription; the peer: a client with its own connection). 1 runs a single
            hub worker in this process.
        reps: repetitions; medians are reported.

    Returns:
        ``hub_ingest_pg_events_per_s`` (ours), ``pg_copy_raw_events_per_s`` (the peer),
        ``hub_ratio_vs_copy`` (ratio of the medians), ``hub_ratio_min`` (the worst
        repetition's paired ratio), ``hub_events_per_batch``, ``hub_streams``.

    Raises:
        sqlalchemy.exc.OperationalError: the server cannot be reached.
    """
    if min(batches, entries, events, reps, streams) <= 0:
        raise ValueError("batches, entries, events, streams and reps must be > 0")
    data = [
        workload(batches, entries, events, seed=7 + k, node=f"gw{k + 1}") for k in range(streams)
    ]
    rows = [peer_rows(d) for d in data]
    n = streams * batches * entries * events
    runs: list[tuple[float, float]] = []
    for rep in range(reps):
        got: dict[str, float] = {}
        for side in ("ours", "peer") if rep % 2 == 0 else ("peer", "ours"):
            got[side] = _side(server, side, data if side == "ours" else rows, n)
        runs.append((got["ours"], got["peer"]))
    ours = statistics.median(r[0] for r in runs)
    peer = statistics.median(r[1] for r in runs)
    return {
        "hub_ingest_pg_events_per_s": ours,
        "pg_copy_raw_events_per_s": peer,
        "hub_ratio_vs_copy": ours / peer,
        "hub_ratio_min": min(a / b for a, b in runs),
        "hub_events_per_batch": float(entries * events),
        "hub_streams": float(streams),
    }


if __name__ == "__main__":
    import sys

    k = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    print(json.dumps(bench_hub_ingest(streams=k, reps=3), indent=2))
