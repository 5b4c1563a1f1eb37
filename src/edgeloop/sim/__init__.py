"""Simulation: a seeded factory floor with labelled faults, and chaos for the uplink.

Import the pieces from here or as namespaces (``edgeloop.sim.factory``,
``edgeloop.sim.faults``, ``edgeloop.sim.chaos``).
"""

from edgeloop.sim.chaos import (
    ChaosTransport,
    Corruption,
    PartitionSchedule,
    corrupt,
    flip_bytes,
    truncate,
    wrong_version,
)
from edgeloop.sim.factory import FactoryConfig, FactorySim, LoadProfile, MachineSpec
from edgeloop.sim.faults import FaultKind, FaultLabel, FaultSpec, schedule_faults

__all__ = [
    "ChaosTransport",
    "Corruption",
    "FactoryConfig",
    "FactorySim",
    "FaultKind",
    "FaultLabel",
    "FaultSpec",
    "LoadProfile",
    "MachineSpec",
    "PartitionSchedule",
    "corrupt",
    "flip_bytes",
    "schedule_faults",
    "truncate",
    "wrong_version",
]
