"""Node reconciliation, driven by an in-memory executor that really downloads and verifies.

The executor below plays the node's I/O adapter: it fetches byte ranges from a hub over a
link that can drop mid-download or corrupt bytes, verifies complete artifacts with the
real Ed25519 check, and swaps. The properties hold for any interleaving of those faults.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeloop.desired import (
    ActualState,
    DesiredState,
    Download,
    GroupState,
    LocalArtifact,
    ModelSlot,
    Prune,
    Report,
    Swap,
    Verify,
    add_range,
    reconcile,
    resolve,
    version_drift,
)
from edgeloop.errors import ConfigError
from edgeloop.registry import DataFingerprint, InputSchema, Manifest, artifact_id
from edgeloop.rollout import Fleet, NodeModels
from edgeloop.security import PrivateKey, Signature, VerificationError, trust, verify_artifact

KEY = PrivateKey.generate()
TRUSTED = trust(KEY.public_key)
CHUNK = 64
PIPE = {"preset": "factory", "detectors": ["robust", "onnx"]}


@dataclass
class Published:
    data: bytes
    manifest_bytes: bytes
    signature: Signature

    @property
    def slot_ref(self) -> tuple[str, int]:
        return artifact_id(self.data), len(self.data)


def publish(version: str, size: int) -> Published:
    data = (version.encode() * (size // len(version) + 1))[:size]
    m = Manifest(
        version=version,
        artifact=artifact_id(data),
        size=len(data),
        kind="pca_t2q",
        input_schema=InputSchema(("a",), "factory"),
        training_data=DataFingerprint("cd" * 32, 0, 1, (), 10),
    )
    mb, sig = KEY.sign_manifest(m)
    return Published(data, mb, sig)


HUB = {v: publish(v, n) for v, n in (("v1", 300), ("v2", 1000), ("v3", 130))}
BY_ID = {p.slot_ref[0]: p for p in HUB.values()}


def slot(version: str, mode: str = "act") -> ModelSlot:
    art, size = HUB[version].slot_ref
    return ModelSlot(version, art, size, mode)  # type: ignore[arg-type]


def doc(
    gen: int, act: str, shadow: str | None = None, pipeline: dict[str, object] = PIPE
) -> DesiredState:
    slots = (slot(act),) + ((slot(shadow, "shadow"),) if shadow else ())
    return DesiredState("gw1", gen, slots, pipeline)


@dataclass
class Executor:
    """The node's I/O, in memory. ``link`` bytes per round; ``corrupt`` artifacts' next delivery is bad."""

    actual: ActualState = field(default_factory=lambda: ActualState("gw1"))
    disk: dict[str, bytearray] = field(default_factory=dict)
    downloaded: int = 0
    log: list[object] = field(default_factory=list)

    def round(self, desired: DesiredState | None, link: int, corrupt: set[str]) -> Report:
        budget = link
        arts = dict(self.actual.artifacts)
        for action in reconcile(desired, self.actual, chunk_size=CHUNK, max_failures=3):
            self.log.append(action)
            if isinstance(action, Prune):
                for a in action.artifacts:
                    arts.pop(a, None)
                    self.disk.pop(a, None)
            elif isinstance(action, Download):
                local = arts.get(action.artifact) or LocalArtifact(
                    action.artifact, len(BY_ID[action.artifact].data)
                )
                for a, b in action.ranges:
                    assert all(b <= x or a >= y for x, y in local.held), "re-downloading held bytes"
                    if budget < b - a:
                        break  # the link drops: what arrived so far stays
                    budget -= b - a
                    piece = bytearray(BY_ID[action.artifact].data[a:b])
                    if action.artifact in corrupt:
                        piece[0] ^= 0xFF
                        corrupt.discard(action.artifact)
                    buf = self.disk.setdefault(action.artifact, bytearray(local.size))
                    buf[a:b] = piece
                    self.downloaded += b - a
                    local = replace(local, held=add_range(local.held, a, b))
                arts[action.artifact] = local
            elif isinstance(action, Verify):
                p = BY_ID[action.artifact]
                local = arts[action.artifact]
                try:
                    verify_artifact(
                        p.manifest_bytes, p.signature, TRUSTED, bytes(self.disk[action.artifact])
                    )
                    arts[action.artifact] = replace(local, verified=True)
                except VerificationError as exc:
                    self.disk.pop(action.artifact, None)
                    arts[action.artifact] = replace(
                        local, held=(), failures=local.failures + 1, last_error=str(exc)
                    )
            elif isinstance(action, Swap):
                assert all(arts[m.artifact].verified for m in action.models)
                self.actual = replace(
                    self.actual,
                    generation=action.generation,
                    active=action.models,
                    previous=action.keep,
                    pipeline_digest=action.pipeline_digest,
                )
            self.actual = replace(self.actual, artifacts=MappingProxyType(dict(arts)))
            if isinstance(action, Report):
                return action
        raise AssertionError("reconcile must end with a report")

    def check_safe(self) -> None:
        """Everything active (and the previous model) is on disk and hashes right."""
        keep = [*self.actual.active, *([self.actual.previous] if self.actual.previous else [])]
        for m in keep:
            assert artifact_id(bytes(self.disk[m.artifact])) == m.artifact


def converge(
    ex: Executor,
    desired: DesiredState,
    link: int = 10_000,
    corrupt: set[str] | None = None,
    rounds: int = 60,
) -> int:
    bad = set() if corrupt is None else corrupt
    for i in range(rounds):
        rep = ex.round(desired, link, bad)
        ex.check_safe()
        if rep.status == "converged":
            return i
    raise AssertionError(f"did not converge: {rep}")


def test_fresh_node_downloads_verifies_swaps_then_reports_converged() -> None:
    ex = Executor()
    first = reconcile(doc(1, "v1"), ex.actual, chunk_size=CHUNK)
    assert [type(a).__name__ for a in first] == ["Download", "Report"]
    assert first[0].ranges == ((0, 64), (64, 128), (128, 192), (192, 256), (256, 300))  # type: ignore[union-attr]
    assert first[-1].status == "converging"  # type: ignore[union-attr]
    # Each round re-plans from the state the previous one left: download, verify, swap.
    assert converge(ex, doc(1, "v1")) == 3
    assert ex.actual.active == (slot("v1"),) and ex.actual.generation == 1
    assert [type(a).__name__ for a in ex.log] == [
        "Download",
        "Report",
        "Verify",
        "Report",
        "Swap",
        "Report",
        "Report",
    ]
    assert reconcile(doc(1, "v1"), ex.actual) == (Report("converged", "gw1", 1, 1),)


def test_swap_keeps_the_previous_model_and_rollback_needs_no_download() -> None:
    ex = Executor()
    converge(ex, doc(1, "v1"))
    converge(ex, doc(2, "v2", shadow="v1"))
    assert ex.actual.previous == slot("v1") and ex.actual.generation == 2
    before = ex.downloaded
    converge(ex, doc(3, "v1"))
    assert ex.downloaded == before  # v1 was kept
    assert ex.actual.active == (slot("v1"),) and ex.actual.previous == slot("v2")


def test_interrupted_downloads_resume_without_fetching_bytes_twice() -> None:
    ex = Executor()
    rounds = converge(ex, doc(1, "v2"), link=150)
    assert ex.downloaded == 1000 and rounds >= 1000 // 150


def test_corrupt_bytes_are_caught_dropped_and_fetched_again() -> None:
    ex = Executor()
    converge(ex, doc(1, "v2"), corrupt={slot("v2").artifact})
    assert ex.downloaded == 2000
    local = ex.actual.artifacts[slot("v2").artifact]
    assert local.verified and local.failures == 1 and "hash mismatch" in local.last_error


def test_an_artifact_that_never_verifies_is_given_up_and_current_models_kept() -> None:
    ex = Executor()
    converge(ex, doc(1, "v1"))
    art = slot("v2").artifact
    for _ in range(10):
        rep = ex.round(doc(2, "v2"), 10_000, {art})
    assert rep.status == "failed" and "failed verification 3 times" in rep.detail
    assert ex.actual.active == (slot("v1"),) and ex.actual.generation == 1


def test_stale_documents_are_ignored() -> None:
    ex = Executor()
    converge(ex, doc(5, "v1"))
    (rep,) = reconcile(doc(4, "v2"), ex.actual)
    assert (
        isinstance(rep, Report)
        and rep.status == "stale"
        and "older than the applied 5" in rep.detail
    )


def test_pipeline_changes_alone_swap_without_downloads() -> None:
    ex = Executor()
    converge(ex, doc(1, "v1"))
    actions = reconcile(doc(2, "v1", pipeline={"preset": "nab"}), ex.actual)
    assert [type(a).__name__ for a in actions] == ["Swap", "Report"]


def test_unneeded_artifacts_are_pruned_but_not_the_previous_one() -> None:
    ex = Executor()
    converge(ex, doc(1, "v1"))
    converge(ex, doc(2, "v2"))
    converge(ex, doc(3, "v3"))
    assert ex.actual.previous == slot("v2")
    assert set(ex.actual.artifacts) == {slot("v3").artifact, slot("v2").artifact}


versions = st.sampled_from(["v1", "v2", "v3"])


@settings(max_examples=80)
@given(
    st.lists(st.tuples(versions, st.one_of(st.none(), versions)), min_size=1, max_size=5),
    st.integers(64, 700),
    st.sets(st.sampled_from(["v1", "v2", "v3"]), max_size=2),
    st.lists(st.integers(0, 3), min_size=5, max_size=5),
)
def test_any_sequence_of_documents_converges_safely(
    docs: list[tuple[str, str | None]], link: int, corrupt: set[str], interrupt: list[int]
) -> None:
    ex = Executor()
    bad = {slot(v).artifact for v in corrupt}
    for gen, (act, shadow) in enumerate(docs, start=1):
        d = doc(gen, act, shadow if shadow != act else None)
        # A few rounds under the current document, then (maybe) the next arrives early.
        for _ in range(interrupt[gen % 5]):
            ex.round(d, link, bad)
            ex.check_safe()
    last = doc(len(docs), docs[-1][0], docs[-1][1] if docs[-1][1] != docs[-1][0] else None)
    converge(ex, last, link, bad)
    assert set(ex.actual.active) == set(last.models) and ex.actual.generation == len(docs)
    # Nothing was fetched twice except after a detected corruption.
    per_try = sum(p.slot_ref[1] for p in HUB.values())
    assert ex.downloaded <= per_try * (1 + len(docs)) + sum(len(BY_ID[a].data) for a in bad)


def test_resolve_combines_group_state_and_rollout_overrides() -> None:
    f = Fleet.of([("gw1", "line-a"), ("gw2", "line-a"), ("gw3", "line-b")])
    groups = {
        "line-a": GroupState("line-a", 3, NodeModels("v1"), PIPE),
        "line-b": GroupState("line-b", 1, NodeModels("v1", shadow="v3"), {"preset": "nab"}),
    }
    refs = {v: p.slot_ref for v, p in HUB.items()}
    out = resolve(groups, f, refs, 7, rollout={"gw2": NodeModels("v2", shadow="v1")})
    assert out["gw1"].models == (slot("v1"),)
    assert out["gw2"].acting == slot("v2") and out["gw2"].shadow == slot("v1", "shadow")
    assert out["gw3"].shadow == slot("v3", "shadow") and out["gw3"].pipeline["preset"] == "nab"
    assert {d.generation for d in out.values()} == {7}
    back = DesiredState.from_bytes(out["gw2"].canonical_bytes())
    assert back == out["gw2"] and back.canonical_bytes() == out["gw2"].canonical_bytes()
    with pytest.raises(
        ConfigError, match=r"node 'gw3' is in group 'line-b', which has no desired state"
    ):
        resolve({"line-a": groups["line-a"]}, f, refs, 8)
    with pytest.raises(ConfigError, match="no artifact for version 'v9'"):
        resolve(groups, f, refs, 8, rollout={"gw1": NodeModels("v9")})


def test_document_errors_are_named() -> None:
    with pytest.raises(ConfigError, match="need one act slot and at most one shadow slot"):
        DesiredState("gw1", 1, (slot("v1", "shadow"),))
    with pytest.raises(ConfigError, match="a version appears twice"):
        DesiredState("gw1", 1, (slot("v1"), slot("v1", "shadow")))
    with pytest.raises(ConfigError, match=r"schema must be 'edgeloop\.desired/1'"):
        DesiredState.from_bytes(b'{"node": "gw1"}')
    with pytest.raises(ConfigError, match="missing field 'generation'"):
        DesiredState.from_bytes(b'{"schema": "edgeloop.desired/1", "node": "gw1", "models": []}')


def test_version_drift_shows_who_is_behind() -> None:
    ex = Executor()
    converge(ex, doc(1, "v1"))
    drift = version_drift({"gw1": doc(2, "v2"), "gw2": doc(2, "v2")}, {"gw1": ex.actual})
    assert drift["gw1"] == {
        "desired_version": "v2",
        "actual_version": "v1",
        "desired_generation": 2,
        "actual_generation": 1,
        "in_sync": False,
    }
    assert drift["gw2"]["actual_version"] is None and drift["gw2"]["in_sync"] is False
