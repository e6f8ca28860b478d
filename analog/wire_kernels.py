"""Compiled kernels of the wired engine, numba, float64: EP's per-cell sums on a wired
crossbar and the row lines' recurrences of its reduction (analog/wires.py), and the
conjugate-gradient updates of its linear solves (analog/wired_schur.py).

From the column-node voltages of two linear arguments (the block Thomas sweeps, BLAS), each
row line's cell drops come from a tridiagonal solve (O(n_out) per sample) and only their
weighted product per cell is kept. In numpy that is a dozen passes over (n_in, n_out, B)
temporaries (48 MB each on the Fashion-sized chip, memory-bound: 0.1 s per product of 200
samples); compiled, one pass per row line in cache. Without numba `drop_product_sum()` is
None and wires.py keeps its numpy path (same results to rounding)."""
from __future__ import annotations

import numpy as np

from .kernels import compiled

_COMPILED: dict = {}


def drop_product_sum():
    """The compiled `f(Ca, ina, Cb, inb, inv, g_w, w) -> (n_in, n_out)`, or None without numba:
    Σ_b w_b Δ_b(a)·Δ_b(b) per cell, from column voltages C (n_in, n_out, B), input voltages
    (n_in, B) and the row lines' Thomas pivots inv (n_in, n_out) (wires._row_line_pivots)."""
    if "dps" not in _COMPILED:
        try:
            import numba
        except ImportError:
            _COMPILED["dps"] = None
        else:                   # the helper first: the kernel's global name must be compiled
            global _row_drops
            _row_drops = numba.njit(cache=True, nogil=True)(_row_drops)
            _COMPILED["dps"] = numba.njit(cache=True, nogil=True)(_drop_product_sum)
    return _COMPILED["dps"]


def _row_drops(C, inp, inv, g_w, j, Y):
    """Y (n_out, B) ← row line j's cell drops: A_j⁻¹ (−g_w·(T c_j − g_w·e_0·in_j)/g_w), T c_j
    the chain's currents (as wires.WiredCrossbar._drop_stack), by Thomas."""
    n, B = Y.shape
    for i in range(n):
        p = inv[j, i]
        for b in range(B):
            c = C[j, i, b]
            t = c - C[j, i - 1, b] if i > 0 else c - inp[j, b]
            if i < n - 1:
                t -= C[j, i + 1, b] - c
            Y[i, b] = (g_w * Y[i - 1, b] - g_w * t) * p if i > 0 else -g_w * t * p
    for i in range(n - 2, -1, -1):
        q = g_w * inv[j, i]
        for b in range(B):
            Y[i, b] += q * Y[i + 1, b]


def _drop_product_sum(Ca, ina, Cb, inb, inv, g_w, w):
    m, n, B = Ca.shape
    out = np.zeros((m, n))
    Ya, Yb = np.empty((n, B)), np.empty((n, B))
    for j in range(m):
        _row_drops(Ca, ina, inv, g_w, j, Ya)
        _row_drops(Cb, inb, inv, g_w, j, Yb)
        for i in range(n):
            acc = 0.0
            for b in range(B):
                acc += w[b] * Ya[i, b] * Yb[i, b]
            out[j, i] = acc
    return out


def pcg_kernels():
    """The `(step, turn)` of the wired engine's conjugate gradients (analog/wired_schur.py):
    the per-sample updates between the products with O and the preconditioner, compiled
    where numba is (one pass each instead of about a dozen numpy passes over (B, n)),
    numpy otherwise (same arithmetic)."""
    step, turn = compiled("pcg_step", _pcg_step), compiled("pcg_turn", _pcg_turn)
    return (step, turn) if step is not None else (_pcg_step_numpy, _pcg_turn_numpy)


def _pcg_step(p, q, r, dx, rz, active, tol):
    """Per active sample, in place (q = A p): α = rz/(p·q), dx += α p, r −= α q, active ←
    any |r| > tol. Returns whether any sample stays active."""
    B, n = p.shape
    any_active = False
    for s in range(B):
        if not active[s]:
            continue
        pq = 0.0
        for i in range(n):
            pq += p[s, i] * q[s, i]
        alpha = rz[s] / pq if pq != 0.0 else 0.0
        still = False
        for i in range(n):
            dx[s, i] += alpha * p[s, i]
            r[s, i] -= alpha * q[s, i]
            if abs(r[s, i]) > tol[s]:
                still = True
        active[s] = still
        any_active = any_active or still
    return any_active


def _pcg_turn(z, r, p, w, rz, active):
    """Per sample, in place: β = (r·z)/rz (0 where inactive), p ← z + β p, w ← r + β w
    (w = P p: P z = r), rz ← r·z."""
    B, n = p.shape
    for s in range(B):
        rzn = 0.0
        for i in range(n):
            rzn += r[s, i] * z[s, i]
        beta = rzn / rz[s] if active[s] and rz[s] != 0.0 else 0.0
        for i in range(n):
            p[s, i] = z[s, i] + beta * p[s, i]
            w[s, i] = r[s, i] + beta * w[s, i]
        rz[s] = rzn


def _pcg_step_numpy(p, q, r, dx, rz, active, tol):
    pq = (p * q).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where(active & (pq != 0.0), rz / pq, 0.0)
    dx += alpha[:, None] * p
    r -= alpha[:, None] * q
    active &= (np.abs(r) > tol[:, None]).any(1)
    return bool(active.any())


def _pcg_turn_numpy(z, r, p, w, rz, active):
    rzn = (r * z).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = np.where(active & (rz != 0.0), rzn / rz, 0.0)
    p *= beta[:, None]
    p += z
    w *= beta[:, None]
    w += r
    rz[:] = rzn


def row_line_recurrences():
    """The compiled `f(a, g_w, u, v)`, or None without numba: wires._row_line_factors' two
    O(n_out) recurrences along every row line j (a (n_in, n_out) the diagonals of the A_j;
    u, v with their first two entries set), which numpy runs as steps across the lines
    (0.65 → 0.18 ms on the 100 × 302 block). The same operations in the same order."""
    return compiled("row_uv", _row_line_uv)


def _row_line_uv(a, g_w, u, v):
    m, n = a.shape
    for j in range(m):
        for i in range(1, n - 1):
            u[j, i + 1] = a[j, i] / g_w * u[j, i] - u[j, i - 1]
            v[j, n - 2 - i] = a[j, n - 1 - i] / g_w * v[j, n - 1 - i] - v[j, n - i]
