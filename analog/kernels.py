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


def packed_cholesky():
    """The compiled `f(upper, diag, iu, ju) -> (L, ok)`, or None without numba: per sample s,
    L[s] the lower Cholesky factor of the symmetric matrix whose upper triangle (iu, ju) is
    upper[s], plus diag(diag[s]); ok[s] False where it is not positive definite (L[s] is
    then not usable). Factored once, applied by `cholesky_substitute` as often as needed
    (the wired engine's preconditioner, analog/wired_schur.py)."""
    return compiled("pchol", _packed_cholesky)


def _packed_cholesky(upper, diag, iu, ju):
    B, n = diag.shape
    L = np.zeros((B, n, n))
    ok = np.ones(B, np.bool_)
    for s in range(B):
        for k in range(len(iu)):
            L[s, ju[k], iu[k]] = upper[s, k]    # the lower triangle, row by row
        for i in range(n):
            L[s, i, i] += diag[s, i]
        for j in range(n):
            acc = L[s, j, j]
            for k in range(j):
                acc -= L[s, j, k] * L[s, j, k]
            if not acc > 0.0:
                ok[s] = False
                break
            piv = np.sqrt(acc)
            L[s, j, j] = piv
            for i in range(j + 1, n):
                acc = L[s, i, j]
                for k in range(j):
                    acc -= L[s, i, k] * L[s, j, k]
                L[s, i, j] = acc / piv
    return L, ok


def cholesky_substitute():
    """The compiled `f(L, b) -> x`, or None without numba: x[s] = (L[s] L[s]ᵀ)⁻¹ b[s] by
    two substitutions, L[s] lower triangular (from `packed_cholesky`)."""
    return compiled("csub", _cholesky_substitute)


def _cholesky_substitute(L, b):
    B, n = b.shape
    x = np.empty_like(b)
    for s in range(B):
        for i in range(n):                      # L y = b
            acc = b[s, i]
            for k in range(i):
                acc -= L[s, i, k] * x[s, k]
            x[s, i] = acc / L[s, i, i]
        for i in range(n - 1, -1, -1):          # Lᵀ x = y
            acc = x[s, i]
            for k in range(i + 1, n):
                acc -= L[s, k, i] * x[s, k]
            x[s, i] = acc / L[s, i, i]
    return x
