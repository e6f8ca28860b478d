"""Per-chip output trim: one offset per class added to a chip's differential outputs before
the class decision, fitted on a small labelled calibration set read through that chip.

This is the calibration a tester applies to each die: a device stuck high or low on an output
column shifts that class's score on every input, which no encoder shared by many chips can
undo without hurting the others, but ten numbers per chip can. The offsets minimise the mean
cross-entropy of softmax((outputs + b) / T) on the calibration set (a convex problem in b,
solved by gradient descent), and are kept only when they raise the calibration set's accuracy
(otherwise zeros: a trim never makes a chip worse on what it was fitted on).
"""
from __future__ import annotations

import numpy as np

from ..block import batch_outputs, score_outputs

__all__ = ["fit_output_offsets", "read_grid", "trimmed_accuracy_grid"]


def _accuracy(out: np.ndarray, ok: np.ndarray, y: np.ndarray) -> float:
    """The block's one accuracy rule (a non-converged sample counts as wrong)."""
    return score_outputs(out, np.zeros(len(y)), ok, y)["accuracy"]


def fit_output_offsets(out, y, ok=None, temperature: float = 0.1, steps: int = 500, lr: float = 0.5) -> np.ndarray:
    """Offsets b (K,) for outputs `out` (B, K, volts) and labels y (B,); rows with ok False
    (not converged) are left out of the fit. temperature: volts per unit of logit."""
    out, y = np.asarray(out, float), np.asarray(y)
    ok = np.all(np.isfinite(out), axis=1) if ok is None else np.asarray(ok, bool)
    if temperature <= 0 or not ok.any():
        raise ValueError(f"fit_output_offsets: temperature={temperature} must be > 0 and some rows must converge")
    s, Y = out[ok], np.eye(out.shape[1])[y[ok]]
    b = np.zeros(out.shape[1])
    for _ in range(steps):
        z = (s + b) / temperature
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        b -= lr * temperature * (p - Y).mean(0)     # d(mean CE)/db = (p - Y) / T, step lr * T^2
    b -= b.mean()                                   # the decision only sees differences
    return b if _accuracy(out + b, ok, y) > _accuracy(out, ok, y) else np.zeros_like(b)


def read_grid(chips, x, times, batch_size: int = 4096) -> list:
    """reads[i][j]: chip j's `batch_outputs` (outputs, power, ok) on x at read time times[i],
    a fresh read per batch; the chips read in the order `Chip.accuracy` grids do (time by time)."""
    x = np.asarray(x, float)
    return [[batch_outputs(lambda xb, c=chip, t=t: c.solve(xb, t), chip.circuit, x, batch_size) for chip in chips]
            for t in times]


def trimmed_accuracy_grid(chips, x_cal, y_cal, x, y, times, batch_size: int = 4096, reads=None) -> np.ndarray:
    """(len(times), len(chips)) test accuracies with each chip's offsets fitted at each read
    time on (x_cal, y_cal) read through that chip (a non-converged test sample counts as wrong).
    `reads`: the test set's reads already made (`read_grid(chips, x, times)`), so that an
    untrimmed and a trimmed grid read the test set once; default: read it here, every test read
    before the calibration reads."""
    y_cal, y = np.asarray(y_cal), np.asarray(y)
    reads = read_grid(chips, x, times, batch_size) if reads is None else reads
    grid = np.zeros((len(times), len(chips)))
    for i, t in enumerate(times):
        for j, chip in enumerate(chips):
            cal, _, ok_cal = batch_outputs(lambda xb: chip.solve(xb, t), chip.circuit, np.asarray(x_cal, float),
                                           batch_size)
            b = fit_output_offsets(cal, y_cal, ok_cal)
            out, _, ok = reads[i][j]
            grid[i, j] = _accuracy(out + b, ok, y)
    return grid
