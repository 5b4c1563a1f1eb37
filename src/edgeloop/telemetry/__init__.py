"""Telemetry: frames, events and summaries, input validation, and the wire codec.

Typical use::

    from edgeloop import telemetry
    from edgeloop.telemetry import codec

    frame, rejects = telemetry.frame_from_records(records, catalog)
    valid = telemetry.FrameValidator(catalog).process(frame, now_ns)
    payload = codec.encode_frame(valid, catalog.names())

Names are imported lazily (PEP 562): ``edgeloop.telemetry.frame``, which nearly every
package imports, stays free of the codec's dependencies on the outbox and transport
packages (which themselves import telemetry types).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeloop._lazy import lazy_exports

if TYPE_CHECKING:
    from edgeloop.telemetry import codec
    from edgeloop.telemetry.boundary import frame_from_csv, frame_from_records
    from edgeloop.telemetry.frame import Frame, SensorCatalog, SensorKind, SensorSpec
    from edgeloop.telemetry.records import Event, Severity, SummaryBatch, SummaryField
    from edgeloop.telemetry.validate import (
        FrameValidator,
        RejectRecord,
        check_payload_size,
        check_rows,
        count_rejects,
    )

_WHERE = {
    "Event": "records",
    "Frame": "frame",
    "FrameValidator": "validate",
    "RejectRecord": "validate",
    "SensorCatalog": "frame",
    "SensorKind": "frame",
    "SensorSpec": "frame",
    "Severity": "records",
    "SummaryBatch": "records",
    "SummaryField": "records",
    "check_payload_size": "validate",
    "check_rows": "validate",
    "count_rejects": "validate",
    "frame_from_csv": "boundary",
    "frame_from_records": "boundary",
}

__all__ = [
    "Event",
    "Frame",
    "FrameValidator",
    "RejectRecord",
    "SensorCatalog",
    "SensorKind",
    "SensorSpec",
    "Severity",
    "SummaryBatch",
    "SummaryField",
    "check_payload_size",
    "check_rows",
    "codec",
    "count_rejects",
    "frame_from_csv",
    "frame_from_records",
]


__getattr__, __dir__ = lazy_exports("edgeloop.telemetry", {**_WHERE, "codec": "codec"}, globals())
