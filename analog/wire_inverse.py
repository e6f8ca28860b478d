"""The column blocks' inverses of a wired crossbar's reduction (analog/wires.py) by a
truncated Neumann series where that is exact to rounding, Cholesky where it is not.

With metal wires (2.5 Ω per segment: g_w = 0.32 S in the bench chip's circuit units, against
cells of 1e-6–1e-4 S) each
column block M_j = H_j − g_w²·M_{j−1}⁻¹ is its diagonal Λ plus off-diagonal couplings of
1e-7–1e-5 of it. With F = Λ^{-1/2} (M − Λ) Λ^{-1/2} (symmetric, ρ = ‖F‖_∞ ≥ ‖F‖₂),

    M⁻¹ = Λ^{-1/2} (I − F + F² − F³ + F⁴ − …) Λ^{-1/2},

and the terms after F^k add at most ρ^(k+1)/(1−ρ) relative to ‖(I + F)⁻¹‖. The series is
cut at the first k (≤ 4) where that bound is ≤ 2⁻⁵³ (float64 rounding), so it is as exact
as the Cholesky inverse it replaces; where no k ≤ 4 suffices (resistive wires, e.g.
100 Ω per segment) the block is inverted by Cholesky (`spd_inverse`). Terms up to F⁴ take
two BLAS products: F² = F·Fᵀ in float64 by dsyrk (one triangle, half a gemm's flops) and
F²·(F − F²) = F³ − F⁴, at most ρ³ of the result, by a float32 gemm (its rounding stays under
the Cholesky inverse's own bound), against dpotrf + dpotri, which run at ~7 GFLOP/s on
100 × 100 blocks: ≈ 75 µs per block instead of 115–150 µs. The elementwise parts are one
compiled pass each (numba; without it every block takes the Cholesky path), each over a
lower triangle and then mirrored (transposed reads cost more than the arithmetic).
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import lapack
from scipy.linalg.blas import dsyrk

from .kernels import compiled

#: bound on the series' truncation, relative: float64's unit roundoff
TRUNCATION = 2.0 ** -53
#: highest power of F kept; beyond it the block goes to Cholesky
MAX_ORDER = 4


def spd_inverse(M: np.ndarray, scale: float, out: np.ndarray) -> None:
    """out ← scale·M⁻¹ for the symmetric positive definite matrix whose upper triangle is M's
    by Cholesky (half the work of LU); LU on failure."""
    c, info = lapack.dpotrf(M, lower=False)
    if info == 0:
        inv, info = lapack.dpotri(c, lower=False, overwrite_c=True)
        if info == 0:                                   # potri fills the upper triangle only
            np.multiply(inv, scale, out=out)
            out += out.T
            out.flat[:: len(out) + 1] *= 0.5
            return
    np.multiply(np.linalg.inv(np.triu(M) + np.triu(M, 1).T), scale, out=out)


def series_order(rho: float) -> int:
    """The smallest k ≤ MAX_ORDER with ρ^(k+1)/(1−ρ) ≤ TRUNCATION, or −1 if there is none."""
    if not rho < 1.0:
        return -1
    for k in range(MAX_ORDER + 1):
        if rho ** (k + 1) / (1.0 - rho) <= TRUNCATION:
            return k
    return -1


def _scaled_offdiagonal(du, dw, prev, g_w, diag, F, s, rows):
    """F ← Λ^{-1/2} (M − Λ) Λ^{-1/2} and s ← Λ^{-1/2} for the symmetric block M whose lower
    triangle is −du[k]·dw[i] − g_w·prev[i, k] (k < i; + diag[i] on the diagonal; prev
    symmetric); returns ‖F‖_∞ (−1 where a diagonal entry is not positive). The lower
    triangle row by row, then mirrored (F is exactly symmetric); the row sums accumulate
    down the columns (|F| is symmetric), a loop without a serial dependency."""
    n = len(du)
    for i in range(n):
        d = diag[i] - du[i] * dw[i] - g_w * prev[i, i]
        if not d > 0.0:
            return -1.0
        s[i] = 1.0 / np.sqrt(d)
        rows[i] = 0.0
    for i in range(n):
        si, dwi = s[i], dw[i]
        for k in range(i):
            F[i, k] = (-du[k] * dwi - g_w * prev[i, k]) * (si * s[k])
        F[i, i] = 0.0
    for i in range(n):
        for k in range(i):
            F[k, i] = F[i, k]
    for i in range(n):
        for k in range(n):
            rows[k] += abs(F[i, k])
    return rows.max()


def _single_factors(F, F2, A, B):
    """A ← float32(F²), B ← float32(F − F²) from F²'s lower triangle: the factors of
    F³ − F⁴ = F²·(F − F²), both symmetric (lower triangle, then mirrored)."""
    n = F.shape[0]
    for i in range(n):
        for k in range(i + 1):
            f2 = F2[i, k]
            A[i, k] = f2
            B[i, k] = F[i, k] - f2
    for i in range(n):
        for k in range(i):
            A[k, i] = A[i, k]
    for i in range(n):
        for k in range(i):
            B[k, i] = B[i, k]


def _assemble(F, F2, T, s, scale, out):
    """out ← scale·Λ^{-1/2} (I − F + F² − T) Λ^{-1/2}, T = F³ − F⁴ (F² and T zero where the
    series stops earlier), from the lower triangles of F² and T, mirrored: out is exactly
    symmetric, as the next block's prep reads it (T's upper triangle differs from its lower
    only by its product's rounding)."""
    n = len(s)
    for i in range(n):
        si = s[i] * scale
        for k in range(i):
            out[i, k] = (F2[i, k] - F[i, k] - T[i, k]) * (si * s[k])
        out[i, i] = (F2[i, i] - T[i, i]) * (si * s[i]) + si * s[i]
    for i in range(n):
        for k in range(i):
            out[k, i] = out[i, k]


class ColumnInverses:
    """Inverts the column blocks of one reduction in order: `next(du, dw, prev, diag, out)`
    sets out ← g_w·M_j⁻¹ (M_j from the row line's semiseparable factors du, dw, the previous
    g_w·M_{j−1}⁻¹ (None for j = 0) and the diagonal terms). Counts the blocks that took each path."""

    def __init__(self, g_w: float, n: int):
        self.g_w, self.n = g_w, n
        self._prep = compiled("wire_offdiag", _scaled_offdiagonal)
        self._assemble = compiled("wire_assemble", _assemble)
        self._single = compiled("wire_single", _single_factors)
        self._F, self._s, self._rows = np.empty((n, n)), np.empty(n), np.empty(n)
        # F² by dsyrk (F is symmetric: F² = F·Fᵀ, half a gemm's flops) into a Fortran-ordered
        # array whose upper triangle is, read in C order (.T), the lower one the kernels read
        self._F2f = np.zeros((n, n), order="F")
        self._A, self._B = np.empty((n, n), np.float32), np.empty((n, n), np.float32)
        self._T = np.empty((n, n), np.float32)
        self._zero = np.zeros((n, n))
        self.series = self.cholesky = 0

    def next(self, du, dw, prev, diag, out) -> None:
        g_w, F = self.g_w, self._F
        prev = self._zero if prev is None else prev
        rho, order = -1.0, -1
        if self._prep is not None:
            rho = self._prep(du, dw, prev, g_w, diag, F, self._s, self._rows)
            order = series_order(rho)
        if order < 0:
            self.cholesky += 1
            M = -(du[:, None] * dw)                     # upper triangle read
            M -= g_w * prev
            M.flat[:: self.n + 1] += diag
            spd_inverse(M, g_w, out)
            return
        self.series += 1
        F2 = dsyrk(1.0, F.T, c=self._F2f, overwrite_c=1).T if order >= 2 else self._zero
        T = self._zero
        if order >= 3:
            # F³ − F⁴ is ≤ ρ³ of the result: in float32 its rounding (≤ n·2⁻²⁴·ρ³) stays below the
            # n·2⁻⁵³ of the Cholesky inverse's own bound while ρ ≤ 2^(−29/3), which every block
            # the series takes meets (order ≤ 4 needs ρ⁵ ≤ 2⁻⁵³(1−ρ): ρ < 2^(−10.6))
            self._single(F, F2, self._A, self._B)
            T = np.matmul(self._A, self._B, out=self._T)
        self._assemble(F, F2, T, self._s, g_w, out)
