"""Pulsed conductance updates (what in-situ training does to a device), on the normalised
state w = (G − lo)/(hi − lo) ∈ [0, 1].

One pulse up / down changes w by
    Δw₊ = dw_min · (1 + up_down) · (1 − w)^γ · (1 + c2c·ξ)
    Δw₋ = dw_min · (1 − up_down) · w^γ     · (1 + c2c·ξ),   ξ ~ N(0, 1) per pulse,
then w is clipped to [0, 1]. γ = 1 is the soft-bounds device of aihwkit (SoftBoundsDevice:
the step shrinks linearly to zero at the bound it moves towards, so repeated pulses saturate
there), γ = 0 a constant step with hard bounds; up_down ≠ 0 makes potentiation and
depression unequal (asymmetric). With a finite number of `levels`, a pulse moves one level
(constant step 1/(levels − 1), rounded to the grid).
"""
from __future__ import annotations

import numpy as np

from .spec import DeviceSpec


def pulse_step(spec: DeviceSpec, n_levels: int | None = None) -> tuple[float, float]:
    """(nominal step, soft-bound exponent) of the device's pulses."""
    levels = spec.levels if n_levels is None else n_levels
    if levels is not None:
        return 1.0 / (levels - 1), 0.0
    return spec.dw_min, spec.gamma


def apply_pulses(spec: DeviceSpec, w: np.ndarray, n: np.ndarray, rng, dw: float | None = None) -> tuple[np.ndarray, int]:
    """Apply n[i] signed pulses to state w[i]; returns (new w, pulses that hit a bound).

    Vectorised over devices; the loop runs over the pulse index (max |n| iterations), each
    pulse drawing its own cycle-to-cycle noise."""
    w = np.array(w, dtype=float, copy=True)
    n = np.asarray(n, dtype=np.int64)
    step, gamma = pulse_step(spec)
    if dw is not None:
        step = dw
    grid = spec.levels
    count = np.abs(n).ravel()
    sign = np.sign(n).ravel()
    flat = w.ravel()
    hits = 0
    idx = np.flatnonzero(count)
    up_scale, down_scale = step * (1.0 + spec.up_down), step * (1.0 - spec.up_down)
    for p in range(int(count.max()) if count.size else 0):
        idx = idx[count[idx] > p]
        if not len(idx):
            break
        cur = flat[idx]
        up = sign[idx] > 0
        if gamma == 0:
            mag = np.where(up, up_scale, down_scale)
        else:
            mag = np.where(up, up_scale * np.maximum(1.0 - cur, 0.0) ** gamma, down_scale * np.maximum(cur, 0.0) ** gamma)
        if spec.c2c > 0:
            mag = mag * (1.0 + spec.c2c * rng.standard_normal(len(idx)))
        new = cur + np.where(up, mag, -mag)
        if grid is not None:
            new = np.rint(new * (grid - 1)) / (grid - 1)
        out = (new < 0.0) | (new > 1.0)
        hits += int(out.sum())
        flat[idx] = np.clip(new, 0.0, 1.0)
    return flat.reshape(w.shape), hits
