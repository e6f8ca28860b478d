"""Pulsed conductance updates (what in-situ training does to a device), on the normalised
state w = (G − lo)/(hi − lo) ∈ [0, 1].

A continuous device: one pulse up / down changes w by
    Δw₊ = dw_min · (1 + up_down) · (1 − w)^γ · (1 + c2c·ξ)
    Δw₋ = dw_min · (1 − up_down) · w^γ     · (1 + c2c·ξ),   ξ ~ N(0, 1) per pulse,
then w is clipped to [0, 1]. γ = 1 is the soft-bounds device of aihwkit (SoftBoundsDevice:
the step shrinks linearly to zero at the bound it moves towards, so repeated pulses saturate
there), γ = 0 a constant step with hard bounds; up_down ≠ 0 makes potentiation and
depression unequal (asymmetric).

A device with `levels`: the state is a level index, and every pulse moves it exactly one
level up or down (stopping at the end levels). up_down, γ and c2c describe the continuous
device and are not used: a multi-level device is programmed onto its levels, and a pulse
that moved it by a random fraction of a level would leave the grid it is defined by.
"""
from __future__ import annotations

import math

import numpy as np

from .spec import DeviceSpec


def pulse_step(spec: DeviceSpec) -> tuple[float, float]:
    """(nominal step in w, soft-bound exponent) of the device's pulses."""
    if spec.levels is not None:
        return 1.0 / (spec.levels - 1), 0.0
    return spec.dw_min, spec.gamma


def apply_pulses(spec: DeviceSpec, w: np.ndarray, n: np.ndarray, rng, floor: float = 0.0) -> tuple[np.ndarray, int]:
    """Apply n[i] signed pulses to state w[i]; returns (new w, pulses that hit a bound).

    On a device with levels, w is on the level grid i/(levels − 1) and `floor` is the lowest
    w a device may take (the lowest level at or above it is the bottom end); a device with
    pulses starts from its nearest allowed level. Devices with n = 0 are left as they are."""
    if spec.levels is not None:
        return _level_pulses(spec.levels, w, n, floor)
    return _continuous_pulses(spec, w, n, rng)


def _level_pulses(levels: int, w, n, floor: float) -> tuple[np.ndarray, int]:
    top = levels - 1
    w = np.array(w, dtype=float, copy=True)
    n = np.asarray(n, dtype=np.int64)
    bottom = min(max(math.ceil(floor * top - 1e-9), 0), top)
    start = np.clip(np.rint(w * top), bottom, top)
    wanted = start + n
    k = np.clip(wanted, bottom, top)
    moved = n != 0
    w[moved] = k[moved] / top
    return w, int(np.abs(wanted - k)[moved].sum())


def _continuous_pulses(spec: DeviceSpec, w, n, rng) -> tuple[np.ndarray, int]:
    """Vectorised over devices; the loop runs over the pulse index (max |n| iterations), each
    pulse drawing its own cycle-to-cycle noise."""
    w = np.array(w, dtype=float, copy=True)
    n = np.asarray(n, dtype=np.int64)
    step, gamma = pulse_step(spec)
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
        out = (new < 0.0) | (new > 1.0)
        hits += int(out.sum())
        flat[idx] = np.clip(new, 0.0, 1.0)
    return flat.reshape(w.shape), hits
