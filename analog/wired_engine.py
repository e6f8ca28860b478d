"""The native engine on a circuit whose crossbars have wire resistance (analog/wires.py).

Each wired dense block enters the nodal equations through its Kron-reduced terminal
matrix L_eq (outputs and inputs, all coupled), weighted by the block's energy scale;
everything else (devices, amplifiers, the Newton iteration) is the native engine's. The
reduction is recomputed when the conductances change, once per conductance update.

The Newton iteration eliminates the same independent set of nodes as on the unwired
circuit (each layer's nodes), whose Schur solver reads only the diagonal of the eliminated
block: the wires add weak couplings between the nodes of one layer. That elimination is
the preconditioner of conjugate gradients on the whole K (RefinedSchur): a Newton direction
is solved to DIRECTION_RTOL, so Newton takes the unwired circuit's iterations (4 instead of
10 on the Fashion-sized chip); linear solves whose result is read (EP's nudge response, the
exact gradient) to rounding level. The line search and the KCL test use the exact K, so
the operating point is exact either way.

A wired crossbar couples its output nodes with each other, so all of them must share one
energy scale: wires behind amplifiers of different gains would make the circuit
non-reciprocal (no energy function, so neither the convex solve nor EP would hold), and
such a circuit is refused.
"""
from __future__ import annotations

import numpy as np

from .kernels import inverse_cholesky_factors, inverse_factor_product
from .native import REFINEMENTS, NativeEngine, single_blas_thread
from .solution import LazySolution, dissipated_power, scaled_source_currents
from .wire_kernels import cg_kernels, symmetric_from_upper
from .wires import WiredCrossbar


def check_wired(circuit, wire_g) -> None:
    """ValueError when a wired block is sparse or its rows do not share one energy scale."""
    for blk, g in zip(circuit.dense, wire_g):
        if g is None:
            continue
        if blk.cols is not None:
            raise ValueError(f"hardware.wires: layer '{blk.layer.name}' is locally connected; wire resistance "
                             "is modelled on dense crossbars only")
        if np.ndim(blk.scale) and not np.allclose(blk.scale, blk.scale[0], rtol=1e-12, atol=0):
            raise ValueError(f"hardware.wires: layer '{blk.layer.name}' feeds amplifiers of different gains "
                             "(hardware.variation.gain_sigma > 0); its wires would couple rows of different "
                             "energy scales (a non-reciprocal circuit): set gain_sigma to 0 with wires")


#: relative residual of a Newton direction (an inexact Newton step: each iteration still
#: gains this factor, the line search and the KCL test read the exact K); linear solves whose
#: result is read (EP's linear response, the exact gradient) are refined to rounding level
DIRECTION_RTOL = 1e-3
EXACT_RTOL = 1e-14
#: above this tolerance (a Newton direction) the recursion's residual is trusted: it drifts
#: from the true one by rounding (~1e-16 of |K||x|), far below the tolerance; the true
#: residual of the last iterate is not formed (one product with K per direction)
TRUST_RECURSIVE_RTOL = 1e-8
#: conjugate-gradient iterations between two true residuals
CG_MAX_ITER = 20


def _inverse_factors(S: np.ndarray):
    """(W, True) with S⁻¹ = Wᵀ W per sample, W (B, n, n) the inverse of S's Cholesky factor
    by forward substitution vectorised over the batch (a quarter of numpy's batched inverse
    at n = 20); (S⁻¹ by LU, False) where S is not numerically positive definite."""
    n = S.shape[-1]
    compiled = inverse_cholesky_factors()
    if compiled is not None:
        W, ok = compiled(np.ascontiguousarray(S))
        return (W, True) if ok else (np.linalg.inv(S), False)
    try:
        L = np.linalg.cholesky(S)
    except np.linalg.LinAlgError:
        return np.linalg.inv(S), False
    W = np.zeros_like(S)
    for i in range(n):
        W[:, i, i] = 1.0
        if i:
            W[:, i, :i] -= (L[:, i: i + 1, :i] @ W[:, :i, :i])[:, 0]
        W[:, i, : i + 1] /= L[:, i, i, None]
    return W, True


class RefinedSchur:
    """The unwired partition's Schur solver (analog/schur.py), refined against the whole K:
    its elimination reads only the diagonal of the eliminated nodes' block, which the wires
    fill with weak couplings. Each sample's Schur complement is inverted once per solve and
    reused by every refinement, so a Newton direction is exact for the cost of a few
    products (without it Newton needs about twice the iterations)."""

    exact = True

    def __init__(self, base, K: np.ndarray):
        self.base, self.K = base, K

    def __getattr__(self, name):
        return getattr(self.base, name)

    def keeps_preconditioner(self, batch: int) -> bool:
        return False

    def solve(self, d, rhs, cholesky=None, precond=None, rtol: float | None = None) -> np.ndarray:
        """x with |rhs − (K + diag(d)) x| ≤ rtol·max|rhs| per sample (cholesky, precond: unused),
        by conjugate gradients preconditioned with the base elimination, restarted from the
        true residual until it holds."""
        rtol = DIRECTION_RTOL if rtol is None else rtol
        approx = self._approximate_inverse(d)
        x = approx(slice(None))(rhs)
        tol = rtol * (np.abs(rhs).max(1) + 1e-300)
        for _ in range(REFINEMENTS):
            r = rhs - (x @ self.K + d * x)
            todo = np.flatnonzero((np.abs(r) > tol[:, None]).any(1))
            if not len(todo):
                break
            if len(todo) == len(x):             # views, not copies (of the factors too)
                todo = slice(None)
            dx, converged = self._conjugate_gradients(approx, d[todo], r[todo], todo, tol[todo])
            x[todo] += dx
            if converged and rtol >= TRUST_RECURSIVE_RTOL:
                break
        return x

    def _conjugate_gradients(self, approx, d, r, idx, tol):
        """(Δx with (K + diag(d)) Δx ≈ r per sample (rows idx), whether every sample reached
        |r| ≤ tol by the recursion); the updates compiled where numba is (wire_kernels)."""
        step, turn = cg_kernels()
        if step is None:
            return self._conjugate_gradients_numpy(approx, d, r, idx, tol)
        dx, r, active = np.zeros_like(r), np.array(r, float), np.ones(len(r), bool)
        d, tol = np.ascontiguousarray(d, float), np.ascontiguousarray(tol, float)
        apply = approx(idx)
        z = apply(r)
        p, rz = z.copy(), (r * z).sum(1)
        for _ in range(CG_MAX_ITER):
            if not step(p, p @ self.K, d, r, dx, rz, active, tol):
                return dx, True
            turn(apply(r), r, p, rz, active)
        return dx, False

    def _conjugate_gradients_numpy(self, approx, d, r, idx, tol):
        dx = np.zeros_like(r)
        apply = approx(idx)
        z = apply(r)
        p, rz = z.copy(), (r * z).sum(1)
        active = np.ones(len(r), bool)
        with np.errstate(divide="ignore", invalid="ignore"):
            for _ in range(CG_MAX_ITER):
                Ap = p @ self.K + d * p
                alpha = np.where(active, rz / (p * Ap).sum(1), 0.0)
                dx += alpha[:, None] * p
                r = r - alpha[:, None] * Ap
                active &= (np.abs(r) > tol[:, None]).any(1)
                if not active.any():
                    return dx, True
                z = apply(r)
                rz_new = (r * z).sum(1)
                p = z + np.where(active, rz_new / rz, 0.0)[:, None] * p
                rz = rz_new
        return dx, False

    def _approximate_inverse(self, d):
        """rows ↦ the map rhs ↦ (K̃ + diag(d))⁻¹ rhs on those samples, K̃ the K the base
        elimination sees."""
        b = self.base
        E, R = b.E_index, b.R_index                     # slices where they are runs: views, no copies
        inv = 1.0 / (b.KEE + d[:, E])
        if len(b.R) == 0:
            return lambda idx: (lambda rhs: rhs * inv[idx])
        if len(d) > 1 and (inv == inv[0]).all() and (d[:, R] == d[0, R]).all():
            shape = (len(d), len(b.R), len(b.R))
            W, cholesky = _inverse_factors(b._schur_matrices(inv[:1], d[:1, R]))
            W = np.broadcast_to(W, shape)
        else:
            fill = symmetric_from_upper()
            S = b._schur_matrices(inv, d[:, R]) if fill is None else \
                fill(b.KRR_upper - inv @ b.P, np.ascontiguousarray(d[:, R]), b.iu, b.ju)
            W, cholesky = _inverse_factors(S)

        product = inverse_factor_product()

        def rows(idx):
            i, Wi = inv[idx], W[idx]

            def apply(rhs):
                rR = rhs[:, R] - (rhs[:, E] * i) @ b.KRE.T
                if cholesky and product is not None:
                    xR = product(Wi, rR)
                else:
                    y = (Wi @ rR[:, :, None])[:, :, 0]
                    xR = (y[:, None, :] @ Wi)[:, 0] if cholesky else y     # Wᵀy, W kept contiguous
                x = np.empty_like(rhs)
                x[:, R] = xR
                x[:, E] = (rhs[:, E] - xR @ b.KER.T) * i
                return x
            return apply
        return rows


class WiredNativeEngine(NativeEngine):
    """NativeEngine with wire segments of conductance `circuit.wire_g[b]` (S, None: ideal)."""

    def __init__(self, circuit, **options):
        self._wire_g = list(circuit.wire_g)
        check_wired(circuit, self._wire_g)
        self._red_G: list | None = None
        self._red: list = []
        super().__init__(circuit, **options)

    # ---- the reduction, once per conductance update -------------------------------------
    def reductions(self, G_list) -> list:
        """Per dense block, its WiredCrossbar (None where the wires are ideal)."""
        if self._red_G is None or not all(a is b or np.array_equal(a, b) for a, b in zip(self._red_G, G_list)):
            old = self._red or [None] * len(G_list)          # its arrays go to the new reduction
            self._red = [None if g is None else WiredCrossbar(G, g, recycle=o)
                         for G, g, o in zip(G_list, self._wire_g, old)]
            self._red_G = [np.array(G, float, copy=True) for G in G_list]
        return self._red

    def _unwired(self, G_list):
        """G with the wired blocks zeroed: what the base engine's crossbar formulas see."""
        return [np.zeros_like(G) if g is not None else G for G, g in zip(G_list, self._wire_g)]

    def _wired_blocks(self, G_list):
        for blk, red in zip(self.circuit.dense, self.reductions(G_list)):
            if red is not None:
                terms = np.concatenate([blk.out_terms, blk.in_terms])
                yield blk, red, terms, float(np.asarray(blk.scale).ravel()[0])

    # ---- linear part ----------------------------------------------------------------------
    def _linear(self, G_list):
        lin = super()._linear(G_list)
        if not lin["schur"].exact:
            lin["schur"] = RefinedSchur(lin["schur"], lin["K"])
        return lin

    def _build_K(self, G_list, structural=False) -> np.ndarray:
        # the structure (which nodes the Schur solver eliminates) is the unwired crossbar's: the
        # wires' weak couplings between nodes of one layer are left to iterative refinement
        K = super()._build_K(G_list if structural else self._unwired(G_list), structural)
        if not structural:
            for blk, red, terms, s in self._wired_blocks(G_list):
                f, a = self._tf[terms], self._tc[terms]
                m = f >= 0
                W = s * red.block(m, m) * a[m][:, None] * a[m][None, :]
                np.add.at(K, (f[m][:, None], f[m][None, :]), W)
        return K

    def linear_solve(self, G_list, d: np.ndarray, rhs: np.ndarray, precond=None) -> np.ndarray:
        """(K + diag(d)) x = rhs per sample, to rounding level (see RefinedSchur)."""
        solver = self._linear(G_list)["schur"]
        return solver.solve(d, rhs, rtol=EXACT_RTOL) if isinstance(solver, RefinedSchur) else \
            super().linear_solve(G_list, d, rhs, precond)

    def _source_map(self, G_list) -> np.ndarray:
        C = super()._source_map(self._unwired(G_list))
        c = self.circuit
        for blk, red, terms, s in self._wired_blocks(G_list):
            f, a = self._tf[terms], self._tc[terms]
            src, free = c.is_source_term(terms), f >= 0
            np.add.at(C, (terms[src][:, None] - c.n_free, f[free][None, :]),
                      s * red.block(src, free) * a[free][None, :])
        return C

    def _terminal_currents(self, G_list, V, scaled):
        """{block index: currents leaving each terminal [outputs, inputs] into its wired crossbar}."""
        out = {}
        for b, (blk, red) in enumerate(zip(self.circuit.dense, self.reductions(G_list))):
            if red is not None:
                I = red.currents(V[:, np.concatenate([blk.out_terms, blk.in_terms])])
                out[b] = I * float(np.asarray(blk.scale).ravel()[0]) if scaled else I
        return out

    def dense_currents(self, G_list, V, scaled=False):
        parts = super().dense_currents(self._unwired(G_list), V, scaled)
        for b, I in self._terminal_currents(G_list, V, scaled).items():
            n = len(self.circuit.dense[b].out_terms)
            parts[b] = (I[:, :n], I[:, n:])
        return parts

    def source_currents(self, G_list, v, src) -> np.ndarray:
        c = self.circuit
        g = super().source_currents(self._unwired(G_list), v, src)
        V = c.terminal_voltages(v, src)
        for b, I in self._terminal_currents(G_list, V, scaled=False).items():
            terms = np.concatenate([c.dense[b].out_terms, c.dense[b].in_terms])
            s = c.is_source_term(terms)
            np.add.at(g, (slice(None), terms[s] - c.n_free), I[:, s])
        return g

    def power(self, G_list, v, src) -> np.ndarray:
        """Power dissipated in the circuit, wires included (B,)."""
        c = self.circuit
        p = dissipated_power(c, self._unwired(G_list), v, src)
        V = c.terminal_voltages(v, src)
        for blk, red, terms, _ in self._wired_blocks(G_list):
            p = p + ((V[:, terms] @ red.l_eq) * V[:, terms]).sum(1)
        return p

    # ---- what EP and the exact gradient read ------------------------------------------------
    def wired_source_currents(self, G_list, V, used) -> np.ndarray:
        """scaled_source_currents (analog/solution.py) with the wired crossbars' L_eq."""
        c = self.circuit
        V = V if used is None else np.where(np.asarray(used)[:, None], V, 0.0)
        g = scaled_source_currents(c, self._unwired(G_list), V, used)
        for b, I in self._terminal_currents(G_list, V, scaled=True).items():
            terms = np.concatenate([c.dense[b].out_terms, c.dense[b].in_terms])
            s = c.is_source_term(terms)
            np.add.at(g, (slice(None), terms[s] - c.n_free), I[:, s])
        return g

    def drop_difference(self, G_list, b: int, Va: np.ndarray, Vb: np.ndarray, w: np.ndarray):
        """Σ_b w_b [Δ(Va)² − Δ(Vb)²] per cell of block b (None: an ideal-wire block)."""
        red = self.reductions(G_list)[b]
        if red is None:
            return None
        terms = np.concatenate([self.circuit.dense[b].out_terms, self.circuit.dense[b].in_terms])
        return red.drop_difference(Va[:, terms], Vb[:, terms], w)

    def drop_products(self, G_list, b: int, V: np.ndarray, L: np.ndarray):
        """Σ_b Δ(V)·Δ(L) per cell of block b (None: an ideal-wire block)."""
        red = self.reductions(G_list)[b]
        if red is None:
            return None
        terms = np.concatenate([self.circuit.dense[b].out_terms, self.circuit.dense[b].in_terms])
        return red.drop_products(V[:, terms], L[:, terms])


def wired_power(circuit, G_list, v, src) -> np.ndarray:
    """Power dissipated in a circuit with wired crossbars (B,), from its own reductions."""
    return WiredNativeEngine(circuit).power(G_list, np.asarray(v, float), np.asarray(src, float))
