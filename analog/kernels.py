"""Compiled kernels for the native engine's small per-sample systems (numba, float64).

numpy has no batched Cholesky solve: its batched LU (`np.linalg.solve`) spends most of
its time per matrix on copies and calls, not arithmetic, on the 20 × 20 Schur complements
of a training batch. One compiled loop over the samples that fills each S from the upper
triangle the Schur solver forms by a GEMM, factors it (Cholesky) and substitutes, runs
2.5–3× faster (64 samples: 84 µs against 240 µs for the scatter into S and LU; 2,000
samples: 2.7 ms against 6.4 ms; one thread, no fast-math, so the rounding is IEEE's).

Compiled on first use (about a second, then cached on disk by numba); without numba,
`packed_spd_solve()` is None and the Schur solver keeps its numpy paths (same results to
rounding)."""
from __future__ import annotations

import numpy as np

_COMPILED: dict = {}


def compiled(name: str, fn):
    """`fn` compiled by numba (nogil, cached on disk) on the first call for `name`, or None
    without numba; later calls return the same function."""
    if name not in _COMPILED:
        try:
            import numba
        except ImportError:
            _COMPILED[name] = None
        else:
            _COMPILED[name] = numba.njit(cache=True, nogil=True)(fn)
    return _COMPILED[name]


def packed_spd_solve():
    """The compiled `solve(upper, diag, b, iu, ju) -> (x, ok)`, or None without numba:
    per sample s, S = the symmetric matrix whose upper triangle (iu, ju) is upper[s], plus
    diag(diag[s]); x[s] = S⁻¹ b[s]; ok[s] False where S is not positive definite (x[s] is
    then not set)."""
    return compiled("spd", _packed_spd_solve)


def _packed_spd_solve(upper, diag, b, iu, ju):
    B, n = b.shape
    x = np.empty_like(b)
    ok = np.ones(B, np.bool_)
    L = np.empty((n, n))
    for s in range(B):
        for k in range(len(iu)):
            L[ju[k], iu[k]] = upper[s, k]       # S's lower triangle, row by row
        for i in range(n):
            L[i, i] += diag[s, i]
        for j in range(n):                      # S = L Lᵀ in place
            acc = L[j, j]
            for k in range(j):
                acc -= L[j, k] * L[j, k]
            if not acc > 0.0:
                ok[s] = False
                break
            piv = np.sqrt(acc)
            L[j, j] = piv
            for i in range(j + 1, n):
                acc = L[i, j]
                for k in range(j):
                    acc -= L[i, k] * L[j, k]
                L[i, j] = acc / piv
        if not ok[s]:
            continue
        for i in range(n):                      # L y = b
            acc = b[s, i]
            for k in range(i):
                acc -= L[i, k] * x[s, k]
            x[s, i] = acc / L[i, i]
        for i in range(n - 1, -1, -1):          # Lᵀ x = y
            acc = x[s, i]
            for k in range(i + 1, n):
                acc -= L[k, i] * x[s, k]
            x[s, i] = acc / L[i, i]
    return x, ok


def inverse_cholesky_factors():
    """The compiled `f(S) -> (W, ok)`, or None without numba: per sample, W[s] = L⁻¹ with
    S[s] = L Lᵀ (so S⁻¹ = Wᵀ W), lower triangular; ok False when some S[s] is not positive
    definite (W is then not usable). The wired engine's preconditioner (wired_engine.py)
    applies W in every conjugate-gradient step: numpy's batched Cholesky plus a row-by-row
    substitution spend most of their time on calls at n = 20."""
    return compiled("icf", _inverse_cholesky_factors)


def _inverse_cholesky_factors(S):
    B, n = S.shape[0], S.shape[1]
    W = np.zeros_like(S)
    L = np.empty((n, n))
    for s in range(B):
        for j in range(n):                      # S = L Lᵀ, L's lower triangle
            acc = S[s, j, j]
            for k in range(j):
                acc -= L[j, k] * L[j, k]
            if not acc > 0.0:
                return W, False
            piv = np.sqrt(acc)
            L[j, j] = piv
            for i in range(j + 1, n):
                acc = S[s, i, j]
                for k in range(j):
                    acc -= L[i, k] * L[j, k]
                L[i, j] = acc / piv
        for i in range(n):                      # W = L⁻¹ row by row: L W = I
            W[s, i, i] = 1.0 / L[i, i]
            for c in range(i):
                acc = 0.0
                for k in range(c, i):
                    acc -= L[i, k] * W[s, k, c]
                W[s, i, c] = acc / L[i, i]
    return W, True


def inverse_factor_product():
    """The compiled `f(W, r) -> x`, or None without numba: x[s] = W[s]ᵀ W[s] r[s] = S[s]⁻¹ r[s]
    for the lower triangular W of `inverse_cholesky_factors` (numpy's two batched products
    of 20 × 20 matrices by vectors cost 4× more in calls and copies than in arithmetic)."""
    return compiled("ifp", _inverse_factor_product)


def _inverse_factor_product(W, r):
    B, n = r.shape
    x = np.zeros_like(r)
    y = np.empty(n)
    for s in range(B):
        for i in range(n):                      # y = W r (W lower triangular)
            acc = 0.0
            for k in range(i + 1):
                acc += W[s, i, k] * r[s, k]
            y[i] = acc
        for i in range(n):                      # x = Wᵀ y
            for k in range(i + 1):
                x[s, k] += W[s, i, k] * y[i]
    return x
