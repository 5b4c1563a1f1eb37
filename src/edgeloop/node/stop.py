"""Stopping a node process on SIGTERM or SIGINT: in order first, at once on a second signal.

systemd, docker and Kubernetes stop a service with SIGTERM (and SIGKILL after a grace
period); an operator presses Ctrl-C. Either way operators expect the node to hand over
what it can before it goes, so the first signal asks for the same orderly stop as the
end of ``--duration``: sources stop taking data, what they gave is summarised into the
outbox, and the outbox drains to the hub for up to the drain timeout. A second signal
means the operator will not wait: the run is cancelled where it is. Nothing is lost
either way: the durable outbox keeps what the hub has not acknowledged, and the next
start sends it.

Only the process's entry point (``node/main.py``) installs these handlers; the runtime
and the core never see a signal, only an :class:`asyncio.Event` that asks them to stop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from types import TracebackType

log = logging.getLogger("edgeloop.node")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def exit_code(sig: signal.Signals) -> int:
    """128 + the signal's number, as a shell reports a process the signal ended.

    >>> exit_code(signal.SIGTERM), exit_code(signal.SIGINT)
    (143, 130)
    """
    return 128 + int(sig)


class StoppedAtOnce(Exception):
    """A second stop signal cut the orderly stop short; ``exit_code`` is the process's."""

    def __init__(self, sig: signal.Signals) -> None:
        super().__init__(f"stopped at once by a second {sig.name}")
        self.signal = sig
        self.exit_code = exit_code(sig)


class StopOnSignals:
    """While entered (inside a running loop), SIGTERM and SIGINT stop the node.

    The first signal sets :attr:`requested` (the node stops in order); a second one
    cancels the task that entered (the node stops at once, see :class:`StoppedAtOnce`).
    Leaving restores the default handlers.

    Attributes:
        requested: set by the first signal.
        first: the signal that started the stop, or ``None``.
        forced: the signal that cut it short, or ``None``.
    """

    def __init__(self, drain_timeout_s: float) -> None:
        self.requested = asyncio.Event()
        self.first: signal.Signals | None = None
        self.forced: signal.Signals | None = None
        self._drain_timeout_s = drain_timeout_s
        self._task: asyncio.Task[object] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __enter__(self) -> StopOnSignals:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        for sig in STOP_SIGNALS:
            self._loop.add_signal_handler(sig, self._on_signal, sig)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._loop is not None:
            for sig in STOP_SIGNALS:
                self._loop.remove_signal_handler(sig)
        self._loop = None

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.first is None:
            self.first = sig
            log.warning(
                "%s received: stopping (sources stop, the outbox drains for up to %g s; "
                "a second signal stops at once)",
                sig.name,
                self._drain_timeout_s,
            )
            self.requested.set()
        elif self.forced is None:
            self.forced = sig
            log.warning(
                "%s received again: stopping at once; the outbox keeps what was not sent",
                sig.name,
            )
            if self._task is not None:
                self._task.cancel()
