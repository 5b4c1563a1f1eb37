"""The registry: commands, aliases, promote/rollback, and a history that rebuilds the state."""

from __future__ import annotations

import json

import pytest
from _registry_helpers import make_manifest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeloop.registry import (
    CHALLENGER,
    CHAMPION,
    DeploymentEvent,
    ManifestError,
    ModelRegistry,
    RegistryError,
)
from edgeloop.security import BadSignatureError, PrivateKey, UnknownKeyError, trust

KEY = PrivateKey.generate()
T0 = 1_764_000_000_000_000_000


def register(reg: ModelRegistry, version: str, parent: str | None = None) -> ModelRegistry:
    data, sig = KEY.sign_manifest(make_manifest(version, parent))
    reg, events = reg.register(data, sig, T0, "alice", trusted=trust(KEY.public_key))
    assert [e.kind for e in events] == ["registered"]
    return reg


def three() -> ModelRegistry:
    reg = register(ModelRegistry(), "v1")
    reg = register(reg, "v2", "v1")
    return register(reg, "v3", "v2")


def test_register_promote_rollback_with_history() -> None:
    reg = three()
    reg, _ = reg.promote("v1", T0 + 1, "alice", "first model")
    reg, _ = reg.set_alias(CHALLENGER, "v2", T0 + 2, "rollout")
    assert reg.challenger == "v2" and reg.resolve(CHALLENGER).version == "v2"
    reg, ev = reg.promote(CHALLENGER, T0 + 3, "rollout", "gates passed")
    assert reg.champion == "v2" and reg.challenger is None
    assert (ev[0].kind, ev[0].version, ev[0].previous) == ("promoted", "v2", "v1")
    reg, _ = reg.promote("v3", T0 + 4, "bob")
    reg, ev = reg.rollback(T0 + 5, "bob", "false alarms")
    assert reg.champion == "v2" and (ev[0].version, ev[0].previous) == ("v2", "v3")
    reg, _ = reg.rollback(T0 + 6, "bob")
    assert reg.champion == "v1" and reg.champions == ("v1",)
    with pytest.raises(RegistryError, match=r"rollback: no previous champion \(.*\['v1'\]"):
        reg.rollback(T0 + 7, "bob")
    assert [e.seq for e in reg.events] == list(range(1, 10))
    assert [e.kind for e in reg.history("v3")] == ["registered", "promoted", "rolled_back"]
    assert reg.lineage("v3") == ("v3", "v2", "v1")


def test_free_form_aliases_and_their_rules() -> None:
    reg = three()
    reg, _ = reg.set_alias("line-a-pilot", "v3", T0, "alice")
    assert reg.resolve("line-a-pilot").version == "v3"
    reg, ev = reg.set_alias("line-a-pilot", "v2", T0, "alice")
    assert ev[0].previous == "v3"
    with pytest.raises(RegistryError, match="already points to 'v2'"):
        reg.set_alias("line-a-pilot", "v2", T0, "alice")
    with pytest.raises(RegistryError, match="'champion' moves only by promote and rollback"):
        reg.set_alias(CHAMPION, "v2", T0, "alice")
    with pytest.raises(RegistryError, match="'v1' is a version name"):
        reg.set_alias("v1", "v2", T0, "alice")
    with pytest.raises(ManifestError, match="alias: 'has space' is not a valid name"):
        reg.set_alias("has space", "v2", T0, "alice")
    reg, _ = reg.remove_alias("line-a-pilot", T0, "alice")
    with pytest.raises(RegistryError, match=r"'line-a-pilot' is not set"):
        reg.remove_alias("line-a-pilot", T0, "alice")
    with pytest.raises(
        RegistryError, match=r"no version or alias 'v9' \(versions \['v1', 'v2', 'v3'\]"
    ):
        reg.resolve("v9")


def test_register_refuses_duplicates_orphans_and_bad_signatures() -> None:
    reg = three()
    data, sig = KEY.sign_manifest(make_manifest("v2", "v1"))
    with pytest.raises(RegistryError, match="'v2' is already registered"):
        reg.register(data, sig, T0, "alice")
    data, sig = KEY.sign_manifest(make_manifest("v5", "v4"))
    with pytest.raises(RegistryError, match=r"parent: 'v4' of 'v5' is not registered"):
        reg.register(data, sig, T0, "alice")
    other = PrivateKey.generate()
    data, sig = other.sign_manifest(make_manifest("v4"))
    with pytest.raises(UnknownKeyError):
        reg.register(data, sig, T0, "alice", trusted=trust(KEY.public_key))
    data = make_manifest("v4", creator="mallory").canonical_bytes()  # not what was signed
    with pytest.raises(BadSignatureError):
        reg.register(data, sig, T0, "alice", trusted=trust(KEY.public_key, other.public_key))
    reg, _ = reg.set_alias("v9", "v1", T0, "alice")
    data, sig = KEY.sign_manifest(make_manifest("v9"))
    with pytest.raises(RegistryError, match="'v9' is an alias name"):
        reg.register(data, sig, T0, "alice")
    with pytest.raises(RegistryError, match="actor: must be a non-empty string"):
        reg.promote("v1", T0, "")


def test_diff_by_alias() -> None:
    reg = three()
    reg, _ = reg.promote("v1", T0, "alice")
    paths = [c.path for c in reg.diff(CHAMPION, "v3")]
    assert {"artifact", "parent", "version"} <= set(paths) and "kind" not in paths


def test_rollout_decisions_are_recorded_without_moving_aliases() -> None:
    reg = three()
    reg, _ = reg.promote("v1", T0, "alice")
    reg, ev = reg.record_rollout("v2", {"decision": "start", "fraction": 0.1}, T0, "rollout")
    assert ev[0].kind == "rollout" and ev[0].detail["fraction"] == 0.1
    assert reg.champion == "v1" and dict(reg.aliases) == {CHAMPION: "v1"}


Op = tuple[str, str]
ops = st.lists(
    st.tuples(
        st.sampled_from(["register", "promote", "rollback", "alias", "unalias", "rollout"]),
        st.sampled_from(["v1", "v2", "v3", "v4", "x"]),
    ),
    max_size=25,
)


def run(ops_: list[Op]) -> ModelRegistry:
    reg = ModelRegistry()
    t = T0
    for op, arg in ops_:
        t += 1
        try:
            if op == "register":
                parent = next(iter(reg.versions), None)
                data, sig = KEY.sign_manifest(make_manifest(arg, parent if parent != arg else None))
                reg, _ = reg.register(data, sig, t, "u")
            elif op == "promote":
                reg, _ = reg.promote(arg, t, "u")
            elif op == "rollback":
                reg, _ = reg.rollback(t, "u")
            elif op == "alias":
                reg, _ = reg.set_alias(CHALLENGER, arg, t, "u")
            elif op == "unalias":
                reg, _ = reg.remove_alias(CHALLENGER, t, "u")
            else:
                reg, _ = reg.record_rollout(arg, {"decision": "step"}, t, "rollout")
        except RegistryError:
            pass  # refused commands leave no trace
    return reg


@settings(max_examples=60)
@given(ops)
def test_replaying_the_history_rebuilds_the_same_registry(ops_: list[Op]) -> None:
    reg = run(ops_)
    assert ModelRegistry.replay(reg.events) == reg
    # ... also after a trip through JSON, as a database would store it.
    stored = [json.loads(json.dumps(e.to_dict())) for e in reg.events]
    assert ModelRegistry.replay(DeploymentEvent.from_dict(d) for d in stored) == reg
    # Invariants: numbered history, champion is the top of its history, aliases resolve.
    assert [e.seq for e in reg.events] == list(range(1, len(reg.events) + 1))
    assert reg.champion == (reg.champions[-1] if reg.champions else None)
    assert all(v in reg.versions for v in reg.aliases.values())
    assert all(a != b for a, b in zip(reg.champions, reg.champions[1:], strict=False))


def test_an_altered_history_is_refused_with_the_event_named() -> None:
    reg = three()
    reg, _ = reg.promote("v1", T0, "alice")
    events = list(reg.events)
    with pytest.raises(RegistryError, match=r"event 3 \(registered v3\): expected seq 2"):
        ModelRegistry.replay([events[0], events[2]])
    forged = DeploymentEvent(5, T0, "rolled_back", "v1", "mallory", alias=CHAMPION)
    with pytest.raises(RegistryError, match=r"event 5 \(rolled_back v1\): does not match"):
        reg.apply([forged])
    bad = DeploymentEvent(5, T0, "promoted", "v9", "mallory", alias=CHAMPION)
    with pytest.raises(RegistryError, match="unknown version"):
        reg.apply([bad])
    d = events[0].to_dict()
    d["kind"] = "deleted"
    with pytest.raises(RegistryError, match=r"event\.kind: unknown 'deleted'"):
        DeploymentEvent.from_dict(d)
