"""Compiled kernel for EP's per-cell sums on a wired crossbar (analog/wires.py), numba, float64.

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


def cg_kernels():
    """The compiled `(step, turn)` of the wired engine's conjugate gradients (wired_engine.py),
    or (None, None) without numba: the per-sample updates between the products with K (BLAS)
    and the preconditioner, one pass each instead of about a dozen numpy passes over (B, n)."""
    return compiled("cg_step", _cg_step), compiled("cg_turn", _cg_turn)


def _cg_step(p, Ap, d, r, dx, rz, active, tol):
    """Per active sample, in place: Ap += d·p (Ap = p K on entry), α = rz/(p·Ap), dx += α p,
    r −= α Ap, active ← any |r| > tol. Returns whether any sample stays active."""
    B, n = p.shape
    any_active = False
    for s in range(B):
        if not active[s]:
            continue
        pAp = 0.0
        for i in range(n):
            Ap[s, i] += d[s, i] * p[s, i]
            pAp += p[s, i] * Ap[s, i]
        alpha = rz[s] / pAp if pAp != 0.0 else 0.0
        still = False
        for i in range(n):
            dx[s, i] += alpha * p[s, i]
            r[s, i] -= alpha * Ap[s, i]
            if abs(r[s, i]) > tol[s]:
                still = True
        active[s] = still
        any_active = any_active or still
    return any_active


def _cg_turn(z, r, p, rz, active):
    """Per sample, in place: p ← z + β p with β = (r·z)/rz (0 where inactive), rz ← r·z."""
    B, n = p.shape
    for s in range(B):
        rzn = 0.0
        for i in range(n):
            rzn += r[s, i] * z[s, i]
        beta = rzn / rz[s] if active[s] and rz[s] != 0.0 else 0.0
        for i in range(n):
            p[s, i] = z[s, i] + beta * p[s, i]
        rz[s] = rzn


def symmetric_from_upper():
    """The compiled `f(upper, diag, iu, ju) -> S` (B, n, n), or None without numba: S[s] the
    symmetric matrix with upper triangle upper[s] at (iu, ju), plus diag(diag[s]) (numpy's
    fancy-index scatter of the same costs as much as the product that forms `upper`)."""
    return compiled("sym_upper", _symmetric_from_upper)


def _symmetric_from_upper(upper, diag, iu, ju):
    B, n = diag.shape
    S = np.empty((B, n, n))
    for s in range(B):
        for k in range(len(iu)):
            S[s, iu[k], ju[k]] = upper[s, k]
            S[s, ju[k], iu[k]] = upper[s, k]
        for i in range(n):
            S[s, i, i] += diag[s, i]
    return S




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
