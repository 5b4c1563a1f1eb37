"""Shadow mode on the node: a second model scores the same windows, is measured, never acts.

:class:`ShadowMonitor` is the pipeline's :attr:`~edgeloop.pipeline.pipeline.Pipeline.shadow_sink`.
It keeps, for the current period, the shadow model's scores and those of the acting model
it is compared with (whole numpy blocks, no per-window Python), their inference times and
the shadow's failures. :meth:`ShadowMonitor.take` closes the period: it summarises it with
:func:`edgeloop.rollout.measure` (challenger = the shadow model, champion = the acting
one), logs the shadow's decisions and returns an outbox entry of the summary class
(kind ``"measurement"``, a JSON document). Nothing here can reach the decider or the
action registry: the shadow's scores exist only in this object.

Which of the two models is the rollout's *challenger* is the hub's knowledge, not the
node's: in a shadow stage the challenger is the shadow model, in a canary the challenger
acts and the champion runs in shadow. The document therefore names both versions and
carries both latencies; :func:`measurement_for` orients it for a given challenger (pure;
the hub's ingest can call it).
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import numpy as np
import numpy.typing as npt

from edgeloop.errors import ConfigError
from edgeloop.outbox.base import NewEntry, Priority
from edgeloop.pipeline.types import Scores
from edgeloop.rollout.comparison import measure
from edgeloop.rollout.policy import EdgeMeasurement

KIND_MEASUREMENT = "measurement"
MEASUREMENT_SCHEMA = "edgeloop.shadow-measurement/1"

log = logging.getLogger("edgeloop.node.shadow")


class ShadowMonitor:
    """Collects side-by-side scores per period (see the module docstring).

    Args:
        node: the node id written into each measurement.
        keep: how many closed periods :attr:`periods` keeps (the log of decisions).

    Attributes:
        acting, shadow: the versions compared (``None`` while no shadow runs).
        periods: the latest closed periods' documents, newest last.
        windows_total, shadow_alerts_total: over the node's life (shadow decisions taken
            and, by construction, never acted on).
    """

    def __init__(self, node: str, keep: int = 100) -> None:
        self.node = node
        self.acting: str | None = None
        self.shadow: str | None = None
        self.periods: deque[dict[str, Any]] = deque(maxlen=keep)
        self.windows_total = 0
        self.shadow_alerts_total = 0
        self._start_ns = 0
        self._reset()

    def _reset(self) -> None:
        self._champ: list[npt.NDArray[np.float32]] = []
        self._chall: list[npt.NDArray[np.float32]] = []
        self._champ_ms: list[float] = []
        self._chall_ms: list[float] = []
        self._thresholds: tuple[float, float] = (0.5, 0.5)
        self._errors = 0
        self._windows = 0

    def begin(self, acting: str, shadow: str | None, now_ns: int) -> NewEntry | None:
        """A new pair of models from ``now_ns`` on; returns the previous pair's last period."""
        last = self.take(now_ns) if self.shadow is not None else None
        self.acting, self.shadow = acting, shadow
        self._reset()
        self._start_ns = now_ns
        return last

    # -- the pipeline's sink ----------------------------------------------------------------
    def __call__(
        self,
        group: str,
        champion: Scores,
        challenger: Scores | None,
        champion_ns: int,
        challenger_ns: int,
    ) -> None:
        if self.shadow is None:
            return
        self._champ_ms.append(champion_ns / 1e6)
        self._chall_ms.append(challenger_ns / 1e6)
        if challenger is None or challenger.score.shape != champion.score.shape:
            self._errors += 1
            return
        self._champ.append(champion.score)
        self._chall.append(challenger.score)
        self._thresholds = (challenger.threshold, champion.threshold)
        self._windows += len(champion.score)

    # -- periods ---------------------------------------------------------------------------
    def take(self, now_ns: int) -> NewEntry | None:
        """Close the period at ``now_ns``: the measurement's outbox entry (``None`` if the
        period saw neither a window nor an error, or no shadow runs)."""
        if self.shadow is None or self.acting is None or (not self._windows and not self._errors):
            self._start_ns = max(self._start_ns, now_ns)
            return None
        chall = np.concatenate(self._chall) if self._chall else np.zeros(0, np.float32)
        champ = np.concatenate(self._champ) if self._champ else np.zeros(0, np.float32)
        m = measure(
            self.node,
            self.shadow,
            self._start_ns,
            max(now_ns, self._start_ns),
            chall,
            champ,
            self._thresholds[0],
            self._thresholds[1],
            latency_ms=self._chall_ms,
            errors=self._errors,
        )
        acting_p99 = float(np.percentile(self._champ_ms, 99)) if self._champ_ms else 0.0
        doc = {
            "schema": MEASUREMENT_SCHEMA,
            "acting": self.acting,
            "acting_latency_p99_ms": acting_p99,
            **asdict(m),
        }
        doc["shadow"] = doc.pop("version")
        self.periods.append(doc)
        self.windows_total += m.windows
        self.shadow_alerts_total += m.challenger_alerts
        log.info(
            "shadow %s beside %s: %d windows, shadow alerts %d (not acted on), acting alerts "
            "%d, agreement %d, score shift %.3f, errors %d",
            m.version,
            self.acting,
            m.windows,
            m.challenger_alerts,
            m.champion_alerts,
            m.agreements,
            m.score_shift,
            m.errors,
        )
        self._reset()
        self._start_ns = now_ns
        payload = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        return NewEntry(Priority.SUMMARY, KIND_MEASUREMENT, payload, 0, now_ns)


def decode_measurement(payload: bytes) -> dict[str, Any]:
    """The document of a ``measurement`` outbox entry (for a receiver's decoder table).

    Raises:
        ConfigError: not JSON, or not a shadow measurement document.
    """
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"measurement: not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") != MEASUREMENT_SCHEMA:
        raise ConfigError(f"measurement: schema must be {MEASUREMENT_SCHEMA!r}")
    return doc


def measurement_for(doc: Mapping[str, Any], challenger: str) -> EdgeMeasurement | None:
    """The :class:`EdgeMeasurement` a measurement document gives for ``challenger``.

    ``None`` when the document compares two other versions. When the challenger is the
    acting model (a canary), the two sides are swapped: its alerts are the acting
    model's, its latency the acting latency.

    Raises:
        ConfigError: the document is not a shadow measurement (the field is named).
    """
    if doc.get("schema") != MEASUREMENT_SCHEMA:
        raise ConfigError(f"measurement: schema must be {MEASUREMENT_SCHEMA!r}")
    try:
        common = {
            "node": str(doc["node"]),
            "version": challenger,
            "period_start_ns": int(doc["period_start_ns"]),
            "period_end_ns": int(doc["period_end_ns"]),
            "windows": int(doc["windows"]),
            "agreements": int(doc["agreements"]),
            "score_shift": float(doc["score_shift"]),
        }
        if doc["shadow"] == challenger:
            return EdgeMeasurement(
                challenger_alerts=int(doc["challenger_alerts"]),
                champion_alerts=int(doc["champion_alerts"]),
                latency_p99_ms=float(doc["latency_p99_ms"]),
                errors=int(doc["errors"]),
                **common,  # type: ignore[arg-type]
            )
        if doc["acting"] == challenger:
            return EdgeMeasurement(
                challenger_alerts=int(doc["champion_alerts"]),
                champion_alerts=int(doc["challenger_alerts"]),
                latency_p99_ms=float(doc["acting_latency_p99_ms"]),
                errors=0,  # an acting model's failure stops the node: it had none
                **common,  # type: ignore[arg-type]
            )
    except KeyError as exc:
        raise ConfigError(f"measurement: missing field {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"measurement: malformed ({exc})") from None
    return None
