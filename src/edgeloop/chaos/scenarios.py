"""The chaos matrix: what each scenario does to the deployment, and when.

A scenario is pure data: how many gateways and hub processes, the broker's and the
outboxes' settings, and a timeline of :class:`Step` s at fractions of the run, so a
``--quick`` run and a soak run do the same things at the same relative moments.
``recovery`` is the fraction at which the last fault ends; ``drain_s`` is measured
from there (``None``: the scenario has no outage to recover from).

Actions of a step (``arg`` in brackets):

========================= ==============================================================
``cut`` / ``restore``     reset every gateway link and refuse new connections / end it
``link`` [delay, drop]    slow and lossy gateway links: one-way delay (s) and the share
                          of forwarded chunks that reset the connection
``kill_gateway`` [i]      SIGKILL gateway ``i`` while a batch is on the wire
``start_gateway`` [i]     start it again (same plan, same outbox file)
``kill_hub`` [i]          SIGKILL hub process ``i``
``start_hub`` [i]         start it again (same group and instance)
``restart_broker``        stop Mosquitto (SIGTERM: it saves its sessions), start it again
``pause_hub`` [i]         SIGSTOP hub ``i`` (a hub that stops consuming)
``resume_hub`` [i]        SIGCONT it
``replay``                republish captured uplink batches (with their correlation)
``forge``                 publish forged and broken batches on the wire
========================= ==============================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field

ACTIONS = frozenset(
    {
        "cut",
        "restore",
        "link",
        "kill_gateway",
        "start_gateway",
        "kill_hub",
        "start_hub",
        "restart_broker",
        "pause_hub",
        "resume_hub",
        "replay",
        "forge",
    }
)


@dataclass(frozen=True, slots=True)
class Step:
    """Do ``action`` at ``at`` (fraction of the run, 0..1) with ``arg``."""

    at: float
    action: str
    arg: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"step action: {self.action!r} is not one of {sorted(ACTIONS)}")
        if not 0.0 <= self.at <= 1.0:
            raise ValueError(f"step {self.action}: at must be in [0, 1] (got {self.at})")


@dataclass(frozen=True, slots=True)
class Scenario:
    """One row of the matrix.

    Attributes:
        name: what ``--scenario`` selects.
        proves: one line on what the scenario shows when its row reads all zeros.
        steps: the timeline.
        recovery: fraction of the run at which the last fault ends (``None``: none).
        gateways, hubs: processes of each kind.
        budget_bytes: the gateways' outbox disk budget, ``(quick, full)`` runs
            (``None``: unbounded). The full run's budget holds an event entry (raw
            context, ~27 KB) but not the summaries of a long cut.
        corrupt_samples: share of samples corrupted at the source (bad sensor input).
        broker_extra: lines appended to Mosquitto's configuration.
        hub_max_pending: MQTT receive maximum of each hub (flow control).
        evictions_expected: the scenario is meant to force evictions.
    """

    name: str
    proves: str
    steps: tuple[Step, ...] = ()
    recovery: float | None = None
    gateways: int = 1
    hubs: int = 1
    budget_bytes: tuple[int, int] | None = None
    corrupt_samples: float = 0.0
    broker_extra: tuple[str, ...] = ()
    hub_max_pending: int = 32
    evictions_expected: bool = False
    needs_broker_binary: bool = False
    faults: tuple[tuple[str, float, float], ...] = ()
    """``(kind, start, end)`` injected into machine ``m01`` of every gateway (fractions
    of the run): anomalies raise events, which carry raw context (big entries)."""
    tags: tuple[str, ...] = field(default=())


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "partition-short",
        "a short uplink cut: the outbox holds, then resends; the hub stores each entry once",
        (Step(0.4, "cut"), Step(0.5, "restore")),
        recovery=0.5,
    ),
    Scenario(
        "partition-long",
        "a long uplink cut: the backlog drains in order after the link returns",
        (Step(0.15, "cut"), Step(0.7, "restore")),
        recovery=0.7,
    ),
    Scenario(
        "slow-lossy-link",
        "50 ms one-way delay and connections reset mid-stream (20 % of chunks): resends, no loss, no dup",
        (Step(0.1, "link", (0.05, 0.2)), Step(0.75, "link", (0.0, 0.0))),
        recovery=0.75,
    ),
    Scenario(
        "gateway-kill",
        "kill -9 of a gateway with a batch on the wire: it restarts, replays from its resume "
        "point, and what died in its memory is produced again",
        (Step(0.45, "kill_gateway", (0,)), Step(0.55, "start_gateway", (0,))),
        recovery=0.55,
    ),
    Scenario(
        "hub-kill",
        "kill -9 of one of two hub processes: the other keeps consuming the shared "
        "subscription; what the dead one had not committed is resent",
        (Step(0.35, "kill_hub", (0,)), Step(0.6, "start_hub", (0,))),
        recovery=0.6,
        gateways=2,
        hubs=2,
    ),
    Scenario(
        "broker-restart",
        "Mosquitto stops and starts again: sessions resume, nothing in flight is lost",
        (Step(0.45, "restart_broker"),),
        recovery=0.5,
        needs_broker_binary=True,
    ),
    Scenario(
        "outbox-budget",
        "a small disk budget and a long cut: the outbox evicts lowest priority first and "
        "counts every evicted sample; the rest arrives",
        (Step(0.1, "cut"), Step(0.8, "restore")),
        recovery=0.8,
        budget_bytes=(4 * 1024, 40 * 1024),
        evictions_expected=True,
        faults=(("imbalance", 0.45, 0.75),),
    ),
    Scenario(
        "bad-input",
        "corrupt samples at the source are rejected and counted; replayed, forged and "
        "broken batches on the wire are deduplicated or dead-lettered, by two hub replicas "
        "sharing the load",
        (Step(0.45, "replay"), Step(0.6, "forge"), Step(0.7, "replay")),
        gateways=2,
        hubs=2,
        corrupt_samples=1e-3,
    ),
    Scenario(
        "slow-hub",
        "a hub that stops consuming while Mosquitto may queue one message for it: the broker "
        "drops the rest, the nodes resend until the hub commits",
        (Step(0.35, "pause_hub", (0,)), Step(0.6, "resume_hub", (0,))),
        recovery=0.6,
        gateways=3,
        broker_extra=("max_queued_messages 1", "log_type notice"),
        hub_max_pending=1,
        needs_broker_binary=True,
    ),
)

BY_NAME = {s.name: s for s in SCENARIOS}


def select(names: list[str] | None) -> list[Scenario]:
    """The scenarios named (in matrix order), or all of them.

    Raises:
        ValueError: a name is not in the matrix (the message lists the names).
    """
    if not names:
        return list(SCENARIOS)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown}; choose from {list(BY_NAME)}")
    return [s for s in SCENARIOS if s.name in names]
