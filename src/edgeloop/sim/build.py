"""Build a simulator from config data (what a node's YAML carries).

Fault times in config are seconds relative to the run's start, so a plan can be written
before the start instant is known.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from edgeloop.errors import ConfigError
from edgeloop.sim.config import FactoryConfig, LoadProfile
from edgeloop.sim.factory import FactorySim
from edgeloop.sim.faults import FaultSpec


def resolve_floor(factory: Mapping[str, Any], where: str = "sources.factory") -> FactoryConfig:
    """The floor a node config describes, validated (a launcher's step; uses pydantic).

    Args:
        factory: either ``{"generate": {"n_machines": 6, "gateway": "gw1", "seed": 0}}``
            (optionally with ``"load"``: a :class:`LoadProfile` mapping for every machine,
            e.g. ``{"regimes": [[0, 0.7], [60, 1.3]]}``: the plant changes its load regime
            60 s after the start) or a full :class:`FactoryConfig` mapping.
        where: the config path, for messages.
    """
    if "generate" in factory:
        gen = dict(factory["generate"])
        if isinstance(gen.get("load"), Mapping):  # a load profile: e.g. a regime change
            gen["load"] = LoadProfile.parse(gen["load"], where=f"{where}.generate.load")
        try:
            return FactoryConfig.generate(**gen)
        except TypeError as exc:
            raise ConfigError(f"{where}.generate: {exc}") from None
    return FactoryConfig.parse(dict(factory), where=where)


def build_sim(
    factory: FactoryConfig | Mapping[str, Any],
    faults: Sequence[Mapping[str, Any]],
    seed: int,
    start_ns: int,
) -> FactorySim:
    """A :class:`FactorySim` from config.

    Args:
        factory: a validated :class:`FactoryConfig`, or a mapping for
            :func:`resolve_floor`.
        faults: ``{"kind", "machine", "start_s", "end_s", "sensor"?, "severity"?}`` each.
        seed: simulator seed.
        start_ns: timestamp of the first sample.
    """
    config = factory if isinstance(factory, FactoryConfig) else resolve_floor(factory)
    specs = []
    for i, f in enumerate(faults):
        try:
            specs.append(
                FaultSpec(
                    kind=f["kind"],
                    machine=f["machine"],
                    start_ns=start_ns + round(float(f["start_s"]) * 1e9),
                    end_ns=start_ns + round(float(f["end_s"]) * 1e9),
                    sensor=f.get("sensor"),
                    severity=float(f.get("severity", 1.0)),
                )
            )
        except KeyError as exc:
            raise ConfigError(f"sources.faults[{i}]: missing key {exc}") from None
    return FactorySim(config, seed=seed, start_ns=start_ns, faults=specs)


def fault_to_config(f: FaultSpec, start_ns: int) -> dict[str, Any]:
    """The inverse of the mapping above, for writing plans into node configs."""
    out: dict[str, Any] = {
        "kind": str(f.kind),
        "machine": f.machine,
        "start_s": (f.start_ns - start_ns) / 1e9,
        "end_s": (f.end_ns - start_ns) / 1e9,
    }
    if f.sensor is not None:
        out["sensor"] = f.sensor
    if f.severity != 1.0:
        out["severity"] = f.severity
    return out
