"""A node config can make the generated plant change its load regime at a given time:
``factory: {generate: {..., load: {regimes: [[0, 0.7], [at_s, level]]}}}`` (validated,
fields named), and it survives the node's plan as JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeloop._plain import from_plain, to_plain
from edgeloop.errors import ConfigError
from edgeloop.sim.build import build_sim, resolve_floor
from edgeloop.sim.config import FactoryConfig

SEC = 1_000_000_000


def test_a_generated_floor_changes_its_load_regime_when_the_config_says() -> None:
    factory = {
        "generate": {
            "n_machines": 2,
            "gateway": "gw1",
            "seed": 3,
            "load": {"regimes": [[0, 0.6], [10, 1.2]], "ramp_s": 1.0, "wander": 0.0},
        }
    }
    floor = resolve_floor(factory)
    assert floor.load.regimes == ((0.0, 0.6), (10.0, 1.2))
    assert [m.name for m in floor.machines] == ["gw1.m01", "gw1.m02"]
    # The same machines as without a load profile: only the load differs.
    plain = resolve_floor({"generate": {"n_machines": 2, "gateway": "gw1", "seed": 3}})
    assert floor.machines == plain.machines and plain.load.regimes is None
    sim = build_sim(floor, [], seed=1, start_ns=0)
    frame = sim.step(20 * SEC)
    for m in floor.machines:
        rows = frame.sensor == sim.catalog.index(f"{m.name}.current")
        t = frame.ts[rows] / SEC
        load = (frame.value[rows] - m.current_base) / m.current_gain
        before, after = load[t < 9.5], load[t > 11.5]
        assert abs(float(np.median(before)) - 0.6) < 0.1
        assert abs(float(np.median(after)) - 1.2) < 0.1
    # The node's plan carries it as JSON (no pydantic on the gateway).
    assert from_plain(FactoryConfig, json.loads(json.dumps(to_plain(floor)))) == floor


def test_a_bad_load_profile_is_named() -> None:
    for load, field in (
        ({"regimes": [[0, 0.6], [10, 2.0]]}, "regimes.1"),
        ({"regimes": [[0, 0.6]], "colour": 1}, "colour"),
    ):
        with pytest.raises(ConfigError) as err:
            resolve_floor({"generate": {"n_machines": 1, "load": load}}, where="sources.0.factory")
        assert "sources.0.factory.generate.load" in str(err.value) and field in str(err.value)
