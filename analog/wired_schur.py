"""The wired engine's linear solves (K + diag(d)) x = rhs per sample (analog/wired_engine.py).

The Newton iteration keeps the unwired circuit's partition: the eliminated nodes E (one
layer's nodes, no couplings among them without wires) and the kept ones R. Wires couple
the nodes of E weakly (O, K_EE's off-diagonal part: row sums of 7–8 % of its diagonal on
the bench chip with 2.5 Ω wires, its largest scaled eigenvalue 0.069), so K = K̃ + Ô with K̃ the matrix the base elimination solves exactly (K_EE's
diagonal, everything else of K) and Ô = [[O, 0], [0, 0]]. Preconditioned conjugate
gradients on K with K̃ as the preconditioner then need:

- the preconditioner P = K̃ + diag(d) once per solve: the kept nodes' Schur complement
  (one GEMM over the batch for its upper triangle, as the base solver forms it) factored
  per sample by a compiled Cholesky loop, then two substitutions per application;
- the operator A p = (K + diag(d)) p as P p + Ô p, with P p carried by the recursion
  P p_new = r + β P p (P z = r), so an iteration costs one product with O (E × E) and
  one application of P, not a product with the whole K.

The first residual is rhs − A P⁻¹ rhs = −Ô P⁻¹ rhs, exact up to the base solve's rounding;
where the result is read to rounding level (EXACT_RTOL) the true residual with the whole
K is formed between restarts.
"""
from __future__ import annotations

import warnings

import numpy as np

from .kernels import cholesky_substitute, packed_cholesky
from .wire_kernels import pcg_kernels

#: relative residual of a Newton direction: with it Newton takes the circuit's quadratic
#: convergence (3 iterations on the bench chip; 1e-3 costs a fourth for most samples)
DIRECTION_RTOL = 1e-4
EXACT_RTOL = 1e-14
#: above this tolerance the recursion's residual is trusted: it drifts from the true one by
#: rounding (~1e-16 of |K||x|), far below the tolerance
TRUST_RECURSIVE_RTOL = 1e-8
#: conjugate-gradient iterations between two true residuals; restarts at most
CG_MAX_ITER = 20
RESTARTS = 30


class Elimination:
    """P⁻¹ = (K̃ + diag(d))⁻¹ per sample, K̃ the base partition's matrix (K_EE diagonal):
    E eliminated, the kept nodes' Schur complement factored once (Cholesky, compiled; an
    inverse by LU where it is not positive definite or numba is missing)."""

    def __init__(self, base, d: np.ndarray):
        self.base = b = base
        E, R = b.E_index, b.R_index
        self.inv = 1.0 / (b.KEE + d[:, E])
        self.L = self.Sinv = None
        if not len(b.R):
            return
        dR = np.ascontiguousarray(d[:, R])
        same = len(d) > 1 and (self.inv == self.inv[0]).all() and (dR == dR[0]).all()
        rows = slice(0, 1) if same else slice(None)        # a cold start: one state for all
        upper = b.KRR_upper - self.inv[rows] @ b.P
        factor = packed_cholesky()
        if factor is not None:
            L, ok = factor(upper, dR[rows], b.iu, b.ju)
            if ok.all():
                self.L = np.broadcast_to(L, (len(d),) + L.shape[1:]) if same else L
                return
        Sinv = np.linalg.inv(b._schur_matrices(self.inv[rows], dR[rows], upper))
        self.Sinv = np.broadcast_to(Sinv, (len(d),) + Sinv.shape[1:]) if same else Sinv

    def rows(self, idx=slice(None)):
        """The map v ↦ P⁻¹ v on the samples idx (v holds those rows only), their factors
        gathered once (a conjugate-gradient loop applies it at every iteration)."""
        b, i = self.base, self.inv[idx]
        E, R = b.E_index, b.R_index
        if not len(b.R):
            return lambda v: v[:, E] * i
        L = None if self.L is None else np.ascontiguousarray(self.L[idx])
        Sinv = None if self.Sinv is None else self.Sinv[idx]
        substitute = cholesky_substitute()

        def apply(v: np.ndarray) -> np.ndarray:
            yE = v[:, E] * i
            rR = v[:, R] - yE @ b.KRE.T
            if L is not None:
                xR = substitute(L, np.ascontiguousarray(rR))
            else:
                xR = (Sinv @ rR[:, :, None])[:, :, 0]
            x = np.empty_like(v)
            x[:, R] = xR
            x[:, E] = yE - (xR @ b.KER.T) * i
            return x
        return apply


class RefinedSchur:
    """The unwired partition's Schur solver (analog/schur.py) made exact on the wired K by
    conjugate gradients preconditioned with it (see the module's docstring)."""

    exact = True

    def __init__(self, base, K: np.ndarray):
        self.base, self.K = base, K
        O = K[np.ix_(base.E, base.E)].copy()
        O.flat[:: len(O) + 1] = 0.0
        self.O = O

    def __getattr__(self, name):
        return getattr(self.base, name)

    def keeps_preconditioner(self, batch: int) -> bool:
        return False

    def coupled(self, p: np.ndarray) -> np.ndarray:
        """Ô p: the wires' couplings inside E, the part of K the preconditioner leaves out."""
        out = np.zeros_like(p)
        E = self.base.E_index
        out[:, E] = p[:, E] @ self.O
        return out

    def solve(self, d, rhs, cholesky=None, precond=None, rtol: float | None = None) -> np.ndarray:
        """x with |rhs − (K + diag(d)) x| ≤ rtol·max|rhs| per sample (cholesky, precond: unused).
        A RuntimeWarning names the samples that did not get there within RESTARTS restarts."""
        rtol = DIRECTION_RTOL if rtol is None else rtol
        P = Elimination(self.base, d)
        x = P.rows()(rhs)
        tol = rtol * (np.abs(rhs).max(1) + 1e-300)
        # the recursion's residuals are trusted at a direction's tolerance, and the first one is
        # −Ô x only where P is applied through its factors (an LU inverse is less exact)
        trusted = rtol >= TRUST_RECURSIVE_RTOL and P.L is not None
        r = -self.coupled(x) if trusted else rhs - (x @ self.K + d * x)
        for _ in range(RESTARTS):
            todo = np.flatnonzero((np.abs(r) > tol[:, None]).any(1))
            if not len(todo):
                return x
            if len(todo) == len(x):             # views, not copies
                todo = slice(None)
            dx, converged = self._pcg(P, r[todo], todo, tol[todo])
            x[todo] += dx
            if converged and trusted:
                return x
            r = rhs - (x @ self.K + d * x)
        short = (np.abs(r) > tol[:, None]).any(1)
        if short.any():
            worst = float((np.abs(r).max(1) / (np.abs(rhs).max(1) + 1e-300)).max())
            warnings.warn(f"wired linear solve: {int(short.sum())} of {len(x)} samples above the relative "
                          f"residual {rtol:g} after {RESTARTS} restarts (worst {worst:.2g})", RuntimeWarning,
                          stacklevel=2)
        return x

    def _pcg(self, P, r, idx, tol):
        """(Δx with (K + diag(d)) Δx ≈ r on the samples idx, whether all reached |r| ≤ tol by
        the recursion); the per-sample updates compiled where numba is (wire_kernels)."""
        step, turn = pcg_kernels()
        apply = P.rows(idx)
        r = np.array(r, float)
        dx, active = np.zeros_like(r), np.ones(len(r), bool)
        tol = np.ascontiguousarray(tol, float)
        z = apply(r)
        p, w, rz = z.copy(), r.copy(), (r * z).sum(1)          # w = P p
        for _ in range(CG_MAX_ITER):
            q = w + self.coupled(p)                                # A p = P p + Ô p
            if not step(p, q, r, dx, rz, active, tol):
                return dx, True
            turn(apply(r), r, p, w, rz, active)
        return dx, False
