"""The exception tree of edgeloop.

::

    EdgeloopError
    ├── ConfigError            a config or pipeline spec is wrong (names the field)
    ├── TelemetryError         input data is wrong (names the field and the reason)
    │   └── CodecError         a wire payload cannot be decoded
    ├── ModelError             a model artifact is missing, corrupt or mismatched
    ├── OutboxError            the outbox cannot store or read
    └── TransportError         a send failed; the entries stay in the outbox
        └── LinkDown           the uplink is unreachable (partition, refused, timed out)
"""

from __future__ import annotations

from enum import StrEnum


class RejectReason(StrEnum):
    """Why a sample or a payload was rejected; the key of every reject counter."""

    WRONG_TYPE = "wrong_type"
    NON_FINITE = "non_finite"
    OUT_OF_ORDER = "out_of_order"
    FUTURE = "future"
    UNKNOWN_SENSOR = "unknown_sensor"
    OVERSIZED = "oversized"
    TRUNCATED = "truncated"
    SCHEMA_VERSION = "schema_version"
    MALFORMED = "malformed"


class EdgeloopError(Exception):
    """Base of every error raised by edgeloop."""


class ConfigError(EdgeloopError):
    """A configuration or pipeline spec is invalid."""


class TelemetryError(EdgeloopError):
    """Telemetry failed validation.

    Attributes:
        field: the offending field (e.g. ``"value"``, ``"ts"``, ``"envelope.v"``).
        reason: a :class:`RejectReason`.
        detail: human-readable detail (what was found, what was expected, where).
    """

    def __init__(self, field: str, reason: RejectReason, detail: str = "") -> None:
        self.field = field
        self.reason = reason
        self.detail = detail
        msg = f"{field}: {reason.value}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class CodecError(TelemetryError):
    """A wire payload cannot be decoded."""


class ModelError(EdgeloopError):
    """A model artifact is missing, corrupt or does not match its input schema."""


class OutboxError(EdgeloopError):
    """The outbox could not store or read entries."""


class TransportError(EdgeloopError):
    """A send failed; entries stay in the outbox and are sent again later."""


class LinkDown(TransportError):
    """The uplink is unreachable."""
