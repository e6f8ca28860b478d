"""The native engine's linear algebra: (K + diag(d)) x = b per sample, by eliminating an
independent set of free nodes and solving the dense Schur complement on the rest.

Free nodes of one layer do not touch each other, so K has large diagonal blocks. The free
nodes split into an independent set E (diagonal Hessian block) and the rest R; E is
eliminated exactly and only S = K_RR + diag(d_R) − K_RE diag(1/D_E) K_ER is solved per
sample: for the Fashion block (100 hidden, 20 outputs) a 20×20 system instead of 120×120.
S is symmetric, so only its upper triangle is formed (one GEMM over the batch with half
the columns). It is positive definite whenever K + diag(d) is (monotone devices,
gmin > 0).

Which factorisation (measured on one BLAS thread, 20×20 systems): numpy's batched LU
(LAPACK gesv per matrix, in C) costs 390 µs for 64 samples and 744 µs for 128, the batched
Cholesky with substitutions vectorised over the batch (a Python loop over the order) 786
and 1,101 µs; at 2,000 samples Cholesky wins (4.9 ms against 8.4). So Cholesky is used from
CHOLESKY_MIN_BATCH samples and CHOLESKY_MIN_ORDER unknowns, LU below either; a Cholesky
factorisation that fails falls back to LU. Where numba is installed, a compiled Cholesky
loop over the samples (analog/kernels.py) replaces both, 2.5–3× faster at every batch size. When every sample of a call is at the same
device state (the first Newton iteration from V_ref), S is formed and factored once.

Many eliminated nodes behind a few kept ones (a locally connected layer of hundreds of
nodes feeding a dense layer of tens): forming S costs n_E·n_R²/2 multiply-adds per sample,
applying it only 2·n_E·n_R. Between Newton iterations of one sample S changes little (the
devices' conductances d move with the state), so the Newton loop carries each sample's
S⁻¹ from the iteration where it was formed and solves the next systems by conjugate
gradients preconditioned with it, S applied without forming it; the engine hands the
last inverses of a solve on to EP's linear response and nudged phases (same samples,
nearby states). A sample whose residual has not reached PCG_RTOL relative to its
right-hand side after PCG_MAX_ITER iterations is solved directly
(and its inverse refreshed), so the result is as exact as the direct solve."""
from __future__ import annotations

import numpy as np

from . import kernels

CHOLESKY_MIN_ORDER = 12
CHOLESKY_MIN_BATCH = 512
#: conjugate gradients instead of forming S when n_R ≥ PCG_MIN_ORDER and n_E ≥ PCG_MIN_RATIO·n_R
PCG_MIN_ORDER = 24
PCG_MIN_RATIO = 4
PCG_MAX_ITER = 4
PCG_RTOL = 1e-13
#: largest B·n_R² of the per-sample inverses a Newton solve carries between iterations
PRECOND_MAX_ENTRIES = 4_000_000
#: a Newton step larger than this (volts, at some node) renews the sample's preconditioner:
#: device conductances vary as exp(u / n·Vt), so after a large step the old S⁻¹ is far off
PRECOND_MAX_STEP = 0.03


def as_slice(idx: np.ndarray):
    """A run of consecutive indices as a slice (basic indexing: views, in-place adds)."""
    if len(idx) and np.array_equal(idx, np.arange(idx[0], idx[0] + len(idx))):
        return slice(int(idx[0]), int(idx[0]) + len(idx))
    return idx


def independent_set(adjacency: np.ndarray) -> np.ndarray:
    """Greedy maximal independent set, least-connected nodes first (bool mask)."""
    n = adjacency.shape[0]
    degree = adjacency.sum(1)
    chosen = np.zeros(n, bool)
    blocked = np.zeros(n, bool)
    for i in np.argsort(degree, kind="stable"):
        if not blocked[i]:
            chosen[i] = True
            blocked |= adjacency[i]
            blocked[i] = True
    return chosen


#: a block's couplings are weak where every row's |off-diagonal| sum is at most this part of
#: its diagonal: a Jacobi sweep over them (analog/relax.py) then contracts
WEAK_COUPLING = 0.5


def weak_coupling(block: np.ndarray, diag: np.ndarray) -> np.ndarray | None:
    """The off-diagonal part of a symmetric block when it is non-zero and weak (see
    WEAK_COUPLING), else None."""
    off = block - np.diag(diag)
    if not off.any() or not (np.abs(off).sum(1) <= WEAK_COUPLING * np.abs(diag)).all():
        return None
    return off


def cholesky_solve(S: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve S x = b per sample for SPD S (B, n, n) by S = L Lᵀ and two substitutions
    vectorised over the batch (numpy has no batched triangular solve). Raises
    np.linalg.LinAlgError when some S is not positive definite."""
    L = np.linalg.cholesky(S)
    n = S.shape[1]
    y = b.copy()
    for i in range(n):                      # L y = b
        y[:, i] /= L[:, i, i]
        if i + 1 < n:
            y[:, i + 1:] -= L[:, i + 1:, i] * y[:, i, None]
    for i in range(n - 1, -1, -1):          # Lᵀ x = y
        y[:, i] /= L[:, i, i]
        if i:
            y[:, :i] -= L[:, i, :i] * y[:, i, None]
    return y


class SchurSolver:
    """(K + diag(d)) x = rhs per sample for a fixed K and partition (E, R)."""

    def __init__(self, K: np.ndarray, E: np.ndarray, R: np.ndarray):
        self.E, self.R = E, R
        self.E_index, self.R_index = as_slice(E), as_slice(R)   # gathers by slices where they are runs
        self.KEE = np.diag(K)[E].copy()
        # the elimination reads only K_EE's diagonal: exact when the eliminated nodes do not couple
        KEE_full = K[np.ix_(E, E)]
        self.exact = np.count_nonzero(KEE_full) == np.count_nonzero(np.diag(KEE_full))
        self.KER, self.KRE = K[np.ix_(E, R)], K[np.ix_(R, E)]
        self.KRR = K[np.ix_(R, R)]
        self.KRR_diag = np.diag(self.KRR).copy()
        self.R_independent = np.count_nonzero(self.KRR) == np.count_nonzero(self.KRR_diag)
        # each block's couplings where they are weak (wire resistance couples the nodes of one
        # layer: row sums of 7–8 % of the diagonal on the bench chip's hidden nodes, 0.5 % on its
        # outputs): the relaxation holds them at the current state
        self.EE_coupling = weak_coupling(KEE_full, self.KEE)
        self.RR_coupling = weak_coupling(self.KRR, self.KRR_diag)
        nR = len(R)
        self.iu, self.ju = np.triu_indices(nR)
        # P[e, k] = K_{r_k e} K_{e s_k} over the upper-triangle pairs (r_k, s_k)
        self.P = self.KRE.T[:, self.iu] * self.KER[:, self.ju]
        self.KRR_upper = self.KRR[self.iu, self.ju]
        self.diag = np.arange(nR)
        self.use_pcg = nR >= PCG_MIN_ORDER and len(E) >= PCG_MIN_RATIO * nR

    def times(self, v: np.ndarray) -> np.ndarray:
        """v @ K for a batch v (B, n) by blocks (K_EE is diagonal): 2·n_E·n_R + n_R² per
        sample instead of n², and dense products, faster than CSR even on a sparse K."""
        E, R = self.E_index, self.R_index
        vE, vR = v[:, E], v[:, R]
        out = np.empty_like(v)
        out[:, E] = vE * self.KEE + vR @ self.KRE
        out[:, R] = vE @ self.KER + vR @ self.KRR
        return out

    def solve(self, d: np.ndarray, rhs: np.ndarray, cholesky=None, precond=None) -> np.ndarray:
        """x (B, n) for Hessian diagonals d (B, n) and right-hand sides rhs (B, n);
        `cholesky`: the SPD solver to use (the module's `cholesky_solve` by default);
        `precond`: per-sample inverses of S at a nearby state (from `solve_keep`), used by
        the conjugate-gradient path only."""
        return self._solve(d, rhs, cholesky, precond, keep=False)[0]

    def solve_keep(self, d: np.ndarray, rhs: np.ndarray, precond=None, refresh=None):
        """As `solve`, also returning per-sample inverses of S to precondition the next
        solve at a nearby state (the next Newton iteration): (x, precond), precond None
        when this partition does not use conjugate gradients. `refresh` (B,) bool: samples
        whose preconditioner is too far off to try (solved directly, inverse renewed)."""
        return self._solve(d, rhs, None, precond, keep=True, refresh=refresh)

    def keeps_preconditioner(self, batch: int) -> bool:
        """Whether Newton should carry per-sample inverses of S (bounded memory)."""
        return self.use_pcg and batch * len(self.R) ** 2 <= PRECOND_MAX_ENTRIES

    def _solve(self, d, rhs, cholesky, precond, keep, refresh=None):
        E, R = self.E_index, self.R_index
        DE = self.KEE + d[:, E]
        x = np.empty_like(rhs)
        if len(self.R) == 0:
            x[:, E] = rhs[:, E] / DE
            return x, None
        inv = 1.0 / DE
        b = rhs[:, R] - (rhs[:, E] * inv) @ self.KRE.T
        dR = np.ascontiguousarray(d[:, R])
        keep = keep and self.keeps_preconditioner(len(b))
        if self.use_pcg and precond is not None and len(precond) == len(b):
            if refresh is not None and refresh.any():
                xR, todo = np.empty_like(b), np.flatnonzero(refresh)
                try_ = np.flatnonzero(~refresh)
                if len(try_):
                    xR[try_], failed = self._pcg(inv[try_], dR[try_], b[try_], precond[try_])
                    todo = np.sort(np.concatenate([todo, try_[failed]]))
            else:
                xR, todo = self._pcg(inv, dR, b, precond)
            if len(todo) and keep:
                precond = precond.copy()
                xR[todo], precond[todo] = self._inverse_solve(inv[todo], dR[todo], b[todo])
            elif len(todo):
                xR[todo] = self._direct(inv[todo], dR[todo], b[todo], cholesky)
        elif keep:
            xR, precond = self._inverse_solve(inv, dR, b)
        else:
            xR, precond = self._direct(inv, dR, b, cholesky), None
        x[:, R] = xR
        x[:, E] = (rhs[:, E] - xR @ self.KER.T) / DE
        return x, (precond if keep else None)

    def _inverse_solve(self, inv, dR, b):
        """S⁻¹ per sample and x = S⁻¹ b (S is SPD and small: the inverse is as accurate as
        the factorisation for a Newton step, and then costs one product per later use)."""
        if len(b) > 1 and (inv == inv[0]).all() and (dR == dR[0]).all():
            # every sample at the same device state (a cold start from V_ref): one S for all
            Sinv = np.repeat(np.linalg.inv(self._schur_matrices(inv[:1], dR[:1])), len(b), axis=0)
            return b @ Sinv[0], Sinv
        Sinv = np.linalg.inv(self._schur_matrices(inv, dR))
        return (Sinv @ b[:, :, None])[:, :, 0], Sinv

    def _schur_matrices(self, inv: np.ndarray, dR: np.ndarray, upper: np.ndarray | None = None) -> np.ndarray:
        """S for each row of inv (1/D_E) and dR: (n, n_R, n_R) (`upper`: its upper triangle
        when already formed)."""
        nR = len(self.R)
        S = np.empty((len(inv), nR, nR))
        upper = self.KRR_upper - inv @ self.P if upper is None else upper
        S[:, self.iu, self.ju] = upper
        S[:, self.ju, self.iu] = upper
        S[:, self.diag, self.diag] += dR
        return S

    def _direct(self, inv, dR, b, cholesky=None) -> np.ndarray:
        if len(b) > 1 and (inv == inv[0]).all() and (dR == dR[0]).all():
            # every sample at the same device state (a cold start from V_ref): one S for all
            return np.linalg.solve(self._schur_matrices(inv[:1], dR[:1])[0], b.T).T
        compiled = kernels.packed_spd_solve()
        if compiled is not None:      # S's upper triangle by one GEMM, then one compiled loop
            upper = self.KRR_upper - inv @ self.P
            x, ok = compiled(upper, dR, b, self.iu, self.ju)
            if not ok.all():          # not positive definite (or not finite): LU says what it can
                bad = np.flatnonzero(~ok)
                S = self._schur_matrices(inv[bad], dR[bad], upper[bad])
                x[bad] = np.linalg.solve(S, b[bad][:, :, None])[:, :, 0]
            return x
        S = self._schur_matrices(inv, dR)
        if len(self.R) >= CHOLESKY_MIN_ORDER and len(b) >= CHOLESKY_MIN_BATCH:
            try:
                return (cholesky or cholesky_solve)(S, b)
            except np.linalg.LinAlgError:
                pass
        return np.linalg.solve(S, b[:, :, None])[:, :, 0]

    def _pcg(self, inv, dR, b, Minv):
        """S x = b per sample by conjugate gradients preconditioned with Minv (B, n_R, n_R),
        S applied without forming it. Returns x and the indices of the samples whose
        residual did not reach PCG_RTOL relative to b (both in the Minv norm) within
        PCG_MAX_ITER iterations."""
        def apply_S(p):
            return p @ self.KRR + dR * p - ((p @ self.KRE) * inv) @ self.KER

        def precondition(r):
            return (Minv @ r[:, :, None])[:, :, 0]

        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            x = precondition(b)
            r = b - apply_S(x)
            z = precondition(r)
            p = z
            rz = (r * z).sum(1)
            goal = PCG_RTOL**2 * np.abs((b * x).sum(1))
            done = rz <= goal
            for _ in range(PCG_MAX_ITER):
                if done.all():
                    break
                q = apply_S(p)
                pq = (p * q).sum(1)
                alpha = np.where(done | ~(pq > 0), 0.0, rz / np.where(pq > 0, pq, 1.0))
                x = x + alpha[:, None] * p
                r = r - alpha[:, None] * q
                z = precondition(r)
                rz_new = (r * z).sum(1)
                done |= rz_new <= goal
                p = z + (rz_new / np.where(rz > 0, rz, 1.0))[:, None] * p
                rz = rz_new
        return x, np.flatnonzero(~done)
