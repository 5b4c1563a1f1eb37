"""A machine's load over time and its first-order (thermal) response, in closed form.

Used by :class:`edgeloop.sim.factory.FactorySim`: load = regime level (plateaus joined
by linear ramps) + a smooth wander (three sinusoids), evaluated vectorised over machines
at any times, so a step of any size gives the same samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from edgeloop.sim.config import LoadProfile

F64 = npt.NDArray[np.float64]

_WANDER_WEIGHTS = (0.5, 0.3, 0.2)


class _Regimes:
    """One machine's regime level: plateaus joined by linear ramps, and its first-order
    response at each breakpoint.

    Breakpoints are generated lazily, in order, from the machine's own generator, so they
    do not depend on how far ahead a step looks. The first-order response to a linear
    segment has a closed form, so the state at each breakpoint is computed once.
    """

    def __init__(self, profile: LoadProfile, tau_s: float, rng: np.random.Generator) -> None:
        self._p = profile
        self._tau = tau_s
        self._rng = rng
        self._pending = list(profile.regimes or ())
        if self._pending and self._pending[0][0] == 0:
            level = self._pending.pop(0)[1]
        elif profile.regimes is not None:
            level = profile.base
        else:
            level = self._draw()
        # Start in steady state: no warm-up transient for detectors to trip on.
        self.t, self.u, self.y = [0.0], [level], [level]
        self.extend_to(0.0)

    def _draw(self) -> float:
        p = self._p
        return float(np.clip(p.base + self._rng.uniform(-p.regime_span, p.regime_span), 0, 1.5))

    def _add(self, t: float, u: float) -> None:
        t0, u0, y0 = self.t[-1], self.u[-1], self.y[-1]
        mt = (u - u0) / (t - t0) * self._tau
        self.y.append(float(u - mt + (y0 - u0 + mt) * np.exp(-(t - t0) / self._tau)))
        self.t.append(t)
        self.u.append(u)

    def extend_to(self, t_max: float) -> None:
        """Generate breakpoints until the last one lies beyond ``t_max``."""
        p = self._p
        while self.t[-1] <= t_max:
            level = self.u[-1]
            if p.regimes is None:
                self._add(self.t[-1] + float(self._rng.uniform(*p.regime_every_s)), level)
                self._add(self.t[-1] + p.ramp_s, self._draw())
            elif self._pending:
                at, new = self._pending.pop(0)
                if at > self.t[-1]:
                    self._add(at, level)
                self._add(at + p.ramp_s, new)
            else:  # constant after the last explicit regime; fixed knots, whatever t_max
                self._add(self.t[-1] + 1e4, level)


class Loads:
    """Load of every machine, and its first-order response, vectorised over machines.

    Load = regime level (piecewise linear, :class:`_Regimes`) + wander (three sinusoids).
    The response of the regime part is the closed form per linear segment; that of each
    sinusoid is its steady state (gain and delay of a first-order lag).
    """

    def __init__(self, profiles: Sequence[LoadProfile], taus: F64, seed: int) -> None:
        self._regimes = [
            _Regimes(p, float(tau), np.random.default_rng([seed, 1, i]))
            for i, (p, tau) in enumerate(zip(profiles, taus, strict=True))
        ]
        self._tau = taus[:, None]
        self._horizon = -np.inf
        rng = np.random.default_rng([seed, 2])
        lo = np.array([p.wander_period_s[0] for p in profiles])[:, None]
        hi = np.array([p.wander_period_s[1] for p in profiles])[:, None]
        hz = 1.0 / rng.uniform(lo, hi, size=(len(profiles), 3))
        wander = np.array([p.wander for p in profiles])[:, None]
        omega_tau = 2 * np.pi * hz * taus[:, None]
        self._hz = hz[:, :, None]
        self._cyc0 = rng.uniform(0, 1, size=(len(profiles), 3, 1))
        self._amp = (wander * np.asarray(_WANDER_WEIGHTS))[:, :, None]
        self._lag_amp = self._amp / np.sqrt(1 + omega_tau**2)[:, :, None]
        self._lag_cyc = (np.arctan(omega_tau) / (2 * np.pi))[:, :, None]

    def _segments(self, t: F64) -> tuple[F64, F64, F64, F64]:
        """Per machine and time: segment start, level and response there, and slope."""
        if t[-1] >= self._horizon:
            for r in self._regimes:
                r.extend_to(float(t[-1]))
            self._horizon = min(r.t[-1] for r in self._regimes)
            self._bt = [np.asarray(r.t) for r in self._regimes]
            sizes = np.array([len(r.t) for r in self._regimes])
            self._row0 = (np.cumsum(sizes) - sizes)[:, None]
            self._t0, self._u0, self._y0 = (
                np.concatenate([getattr(r, a) for r in self._regimes]) for a in "tuy"
            )
            dt = np.diff(self._t0, append=np.inf)
            self._slope = np.where(np.isfinite(dt), np.diff(self._u0, append=0.0) / dt, 0.0)
        # t >= 0 = first breakpoint and t < last breakpoint: the index is a valid segment.
        i = np.stack([np.searchsorted(bt, t, side="right") for bt in self._bt])
        i += self._row0 - 1
        return self._t0[i], self._u0[i], self._y0[i], self._slope[i]

    def _wander(self, t: F64, amp: F64, shift: F64 | float) -> F64:
        cyc = self._hz * t + (self._cyc0 - shift)
        # Reduce in float64, evaluate in float32: float64 sin costs ~8x more.
        frac = ((cyc - np.floor(cyc)) * (2 * np.pi)).astype(np.float32)
        out: F64 = (amp * np.sin(frac)).sum(axis=1)
        return out

    def load(self, t: F64) -> F64:
        """Load, shape ``(machines, len(t))``, at ascending times ``t >= 0`` (s)."""
        t0, u0, _, slope = self._segments(t)
        return u0 + slope * (t - t0) + self._wander(t, self._amp, 0.0)

    def load_and_response(self, t: F64) -> tuple[F64, F64]:
        """Load and its first-order response (each machine's ``temp_tau_s``)."""
        t0, u0, y0, slope = self._segments(t)
        dt = t - t0
        level = u0 + slope * dt
        mt = slope * self._tau
        response = level - mt + (y0 - u0 + mt) * np.exp(-dt / self._tau)
        return (
            level + self._wander(t, self._amp, 0.0),
            response + self._wander(t, self._lag_amp, self._lag_cyc),
        )
