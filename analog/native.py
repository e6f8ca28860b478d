"""Native engine: batched, damped Newton–Raphson on the nodal equations (numpy).

The nodal equations are the stationarity conditions of the circuit's total co-content
F(v) = E(v) − Σ s·I·V (docs/design.md), and F is convex when every device has a monotone
I(u). So we minimise F: Newton's direction from the Hessian K + diag(d(v)) (K: the
conductances and amplifiers, constant between weight updates; d: the devices' small-signal
conductances), SPICE's pnjlim on junction voltages, and a backtracking line search on F
that makes every step go downhill — convergence is then guaranteed, not hoped for.

Convergence. A sample has converged when its last Newton step was a full step smaller
than tol_v (volts) at every node AND the KCL residual at the returned point, in amperes
(the scaled residual divided by the node's energy scale), is at most
tol_i + rtol_i·I_n at every free node (defaults 1e-12 A and
1e-9; I_n, the sum of the magnitudes of the terms that cancel in node n's KCL sum).
Both are checked: a small step alone can hide a stalled iteration.

Speed. The linear solves eliminate an independent set of free nodes and factor the
Schur complement on the rest (analog/schur.py); the iteration itself (analog/newton.py)
computes what depends only on the sources once per solve and each device layer once per
trial point. The line search hands the gradient and Hessian diagonal it computed at the
accepted point to the next iteration, so each iteration evaluates the devices once per
trial point.
"""
from __future__ import annotations

import functools

import numpy as np
from threadpoolctl import ThreadpoolController

from . import assembly
from . import crossbar as xb
from . import schur
from .circuit import CompiledCircuit
from .engine import check_solve_inputs
from .newton import DeviceStack, damped_newton
from .operators import PartitionedK, SparseRight
from .solution import LazySolution, Solution, device_branch_voltages, dissipated_power


_THREADPOOLS = ThreadpoolController()


def single_blas_thread(fn):
    """Run with one BLAS thread: the matrices here are small (≈100×300), where threads
    spinning up costs more than it saves and fights other processes for the 2 cores
    (measured: 5× faster EP training at batch 200 on a loaded 2-core machine)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _THREADPOOLS.limit(limits=1, user_api="blas"):
            return fn(*args, **kwargs)
    return wrapper


#: the Schur solver's Cholesky path (re-exported for tests that spy on it)
_cholesky_solve = schur.cholesky_solve
CHOLESKY_MIN_ORDER = schur.CHOLESKY_MIN_ORDER

class NativeEngine:
    """Batched Newton solver for a CompiledCircuit.

    Parameters: tol_v, the convergence tolerance on a Newton update (V); tol_i and rtol_i,
    the tolerance on the KCL residual at every free node, tol_i + rtol_i·Σ|terms of the
    node's KCL sum| (A); max_iter, Newton iterations per sample; chunk, samples solved together
    (bounds memory).
    """

    name = "native"

    def __init__(self, circuit: CompiledCircuit, tol_v: float = 1e-10, max_iter: int = 200, chunk: int = 4096,
                 tol_i: float = 1e-12, rtol_i: float = 1e-9):
        self.circuit = circuit
        self.tol_v, self.max_iter, self.chunk = float(tol_v), int(max_iter), int(chunk)
        self.tol_i, self.rtol_i = float(tol_i), float(rtol_i)
        for key, val in (("tol_v", self.tol_v), ("tol_i", self.tol_i), ("rtol_i", self.rtol_i)):
            if not (np.isfinite(val) and val >= 0):
                raise ValueError(f"NativeEngine: {key}={val!r} must be a finite number >= 0")
        c = circuit
        # per-terminal mapping to free unknowns (−1 for sources)
        self._tf, self._tc, self._to = c.term_free, c.term_coef, c.term_offset
        ones = [np.ones(xb.g_shape(b)) for b in c.dense]
        structure = self._build_K(ones, structural=True) != 0
        np.fill_diagonal(structure, False)
        chosen = schur.independent_set(structure)
        self._E, self._R = np.flatnonzero(chosen), np.flatnonzero(~chosen)
        self._cache_G: list[np.ndarray] | None = None
        self._last_free = None    # the last free solve's sources, c(src) and S⁻¹: _from_last_free_solve
        self._nl = []
        for blk in c.nonlinear:
            f = self._tf[blk.node_terms]
            self._nl.append((blk, f, self._tc[blk.node_terms], self._to[blk.node_terms],
                             blk.ref_term - c.n_free, blk.scale))
        self._stack = DeviceStack(c, self._tf, self._tc, self._to)

    # ---- linear part ----------------------------------------------------------------------
    def _build_K(self, G_list, structural=False) -> np.ndarray:
        """K (n_free, n_free): the crossbars' and amplifiers' part of F's Hessian
        (`structural`: G as given, no energy scale nor gmin, for the sparsity pattern)."""
        return assembly.conductance_matrix(self.circuit, self._tf, self._tc, G_list, structural)

    def _linear(self, G_list):
        """K and its partition, rebuilt only when the conductances change."""
        if self._cache_G is None or len(self._cache_G) != len(G_list) or not all(
                a.shape == b.shape and np.array_equal(a, b) for a, b in zip(self._cache_G, G_list)):
            for blk, G in zip(self.circuit.dense, G_list):
                expect = xb.g_shape(blk)
                if np.shape(G) != expect:
                    raise ValueError(f"conductances of layer '{blk.layer.name}' have shape {np.shape(G)}, "
                                     f"expected {expect}")
            K = self._build_K(G_list)
            self._lin = dict(K=K, schur=schur.SchurSolver(K, self._E, self._R))
            # c(src) is affine in the source voltages: c = src @ C + c0, one GEMM per solve
            self._lin["C"] = self._source_map(G_list)
            self._lin["c0"] = self._offset_residual_direct(G_list, np.zeros((1, self.circuit.n_sources)))[0]
            self._lin["Kop"] = self._K_operator(K, self._lin["schur"])
            C = self._lin["C"]
            self._lin["Cop"] = C if isinstance(C, np.ndarray) else SparseRight(C)
            self._cache_G = [np.array(G, dtype=float, copy=True) for G in G_list]
            self._last_free = None
        return self._lin

    def _K_operator(self, K, solver):
        """What `v @ K` is computed with: K's (E, R) blocks when K_ER is mostly non-zero (the
        dense coupling between layers, as behind a locally connected layer), CSR when K is
        mostly zeros even there, K itself when there is nothing to partition. The blocks'
        product assumes K_EE diagonal; a K whose eliminated nodes couple (wire resistance,
        analog/wired_engine.py) is multiplied whole."""
        if not len(self._R):
            return K
        nE, nR = len(self._E), len(self._R)
        # the blocks cost two gathers and three GEMMs more than K whole: worth it when they save
        # three quarters of the multiply-adds (120 nodes, 100 eliminated: K whole 25 µs, blocks
        # 43 µs at batch 64; 390 nodes, 358 eliminated: blocks faster)
        if (solver.exact and np.count_nonzero(solver.KER) >= 0.2 * solver.KER.size
                and 2 * nE * nR + nR**2 < K.size / 4):
            return PartitionedK(solver)
        return SparseRight(K) if np.count_nonzero(K) < 0.2 * K.size else K

    def _source_map(self, G_list):
        """C (n_sources, n_free) of the affine residual c = src @ C + c0 (analog/assembly.py),
        from the crossbar edges whose input is a source. (Pushing the identity of the sources
        through the crossbars gives the same matrix at n_sources times the cost of one sample:
        for 784 pixels that was most of an EP training step, rebuilt after every update.)"""
        return assembly.source_map(self.circuit, self._tf, self._tc, G_list)

    def dense_currents(self, G_list, V, scaled=False):
        """Per dense block: (currents leaving each output node, currents leaving each input
        node) through the crossbar, each (B, n): amperes, or weighted by each row's energy
        scale when `scaled`."""
        out = []
        for blk, G in zip(self.circuit.dense, G_list):
            G = blk.scaled(G) if scaled else G
            out.append(xb.currents(blk, G, V[:, blk.out_terms], V[:, blk.in_terms]))
        return out

    def _to_free(self, term_grad: np.ndarray) -> np.ndarray:
        """Chain a per-terminal gradient (B, n_terms) onto the free unknowns (B, n_free)."""
        c = self.circuit
        r = term_grad[:, : c.n_free].copy()
        if len(c.amp_in):
            amp = term_grad[:, c.n_free + c.n_sources:] * c.amp_gain
            np.add.at(r, (slice(None), c.amp_in), amp)
        return r

    def _offset_residual(self, G_list, src):
        """Linear residual at v = 0 (the affine part c of r_lin(v) = K v + c)."""
        L = self._linear(G_list)
        return src @ L["Cop"] + L["c0"]

    def _offset_residual_direct(self, G_list, src):
        """_offset_residual from the crossbar currents (builds the cached affine map)."""
        c = self.circuit
        v0 = np.zeros((src.shape[0], c.n_free))
        V = c.terminal_voltages(v0, src)
        g = np.zeros_like(V)
        for blk, (i_out, i_in) in zip(c.dense, self.dense_currents(G_list, V, scaled=True)):
            g[:, blk.out_terms] += i_out
            g[:, blk.in_terms] += i_in
        return self._to_free(g)

    # ---- nonlinear part -------------------------------------------------------------------
    def _devices(self, v, src, want_energy=True):
        """Device contributions: residual (B, n), Hessian diagonal (B, n), energy (B,)."""
        r = np.zeros_like(v)
        d = np.zeros_like(v)
        e = np.zeros(v.shape[0])
        for blk, f, a, off, ref, scale in self._nl:
            u = blk.sign * (a * v[:, f] + off - src[:, [ref]])
            current, cond = blk.device.current(u)
            r[:, f] += scale * blk.sign * a * current
            d[:, f] += scale * a * a * cond
            if want_energy:
                e += (scale * blk.device.cocontent(u)).sum(1)
        return r, d, e

    # ---- linear solves --------------------------------------------------------------------
    def linear_solve(self, G_list, d: np.ndarray, rhs: np.ndarray, precond=None) -> np.ndarray:
        """Solve (K + diag(d)) x = rhs per sample by eliminating the independent set E
        (`precond`: per-sample inverses of the Schur complement at nearby states, see
        `_preconditioner`). Exact where E is independent, which is every circuit this
        engine builds; where wires couple E's nodes, the wired engine solves on its own
        (analog/wired_schur.py)."""
        return self._linear(G_list)["schur"].solve(d, rhs, cholesky=_cholesky_solve, precond=precond)

    def _from_last_free_solve(self, src: np.ndarray, key: str):
        """What the last free solve left under `key` ("cvec": the linear residual's affine
        part; "precond": per-sample inverses of the Schur complement), when `src` is that
        solve's sources, or them twice (EP's two nudged phases in one batch), else None.
        A preconditioner from there is only a preconditioner: a stale one costs iterations,
        never accuracy (analog/schur.py)."""
        last = self._last_free
        if last is None or last.get(key) is None:
            return None
        old_src, n = last["src"], len(last["src"])
        if len(src) % n or len(src) // n > 2 or not all(
                np.array_equal(src[k * n:(k + 1) * n], old_src) for k in range(len(src) // n)):
            return None
        return last[key] if len(src) == n else np.concatenate([last[key]] * (len(src) // n))

    def _preconditioner(self, src: np.ndarray):
        return self._from_last_free_solve(src, "precond")

    # ---- public API ---------------------------------------------------------------------------
    @single_blas_thread
    def solve(self, G_list, x=None, *, src=None, nudge=None, v0=None) -> Solution:
        """Operating points for a batch: x (B, n_features) volts relative to V_ref (or the
        source voltages `src` directly), nudge (B, n_outputs) currents I_k, v0 a warm start."""
        c = self.circuit
        src, nudge = check_solve_inputs(c, x, src, nudge)
        B = src.shape[0]
        if v0 is not None and np.shape(v0) != (B, c.n_free):
            raise ValueError(f"warm start v0 of shape {np.shape(v0)}, expected {(B, c.n_free)}")
        parts = []
        for lo in range(0, B, self.chunk):
            sl = slice(lo, min(B, lo + self.chunk))
            parts.append(self._solve_chunk(G_list, src[sl], None if nudge is None else nudge[sl],
                                           None if v0 is None else np.asarray(v0, float)[sl]))
        v = np.concatenate([p[0] for p in parts])
        conv = np.concatenate([p[1] for p in parts])
        iters = np.concatenate([p[2] for p in parts])
        v[~conv] = np.nan
        G_solved = self._cache_G    # copies, replaced (never changed) when G changes

        @single_blas_thread
        def extras(name):
            out = (self.source_currents if name == "source_currents" else self.power)(G_solved, v, src)
            out[~conv] = np.nan
            return out

        return LazySolution(v=v, src=src, source_currents=None, converged=conv, iterations=iters, power=None,
                            nudge=nudge, info={"failures": np.flatnonzero(~conv).tolist()}, extras=extras)

    def _solve_chunk(self, G_list, src, nudge, v0):
        c = self.circuit
        lin = self._linear(G_list)
        B = src.shape[0]
        cvec = self._from_last_free_solve(src, "cvec")
        cvec = src @ lin["Cop"] + lin["c0"] if cvec is None else cvec
        inj = np.zeros((B, c.n_free)) if nudge is None else c.nudge_currents(nudge) * c.free_scale
        v = np.full((B, c.n_free), c.vref) if v0 is None else v0
        kept = {}
        out = damped_newton(self, lin, src, cvec, inj, v, precond=self._preconditioner(src), kept=kept,
                            relax=v0 is None)
        if nudge is None:
            self._last_free = {"src": src.copy(), "cvec": cvec, "precond": kept.get("precond")}
        return out

    def _kcl_ok(self, v, src, r, lin, cvec, inj) -> np.ndarray:
        """Residual test in amperes at every free node (see the module docstring)."""
        amps = np.abs(r) / self.circuit.free_scale
        ok = (amps <= self.tol_i).all(1)
        if not ok.all():   # rare: weigh against the currents meeting at each node
            j = np.flatnonzero(~ok)
            mag = self._current_magnitude(v[j], src[j], lin["K"], cvec[j], inj[j])
            ok[j] = (amps[j] <= self.tol_i + self.rtol_i * mag).all(1)
        return ok

    def _current_magnitude(self, v, src, K, cvec, inj):
        """Σ|terms| of the scaled KCL residual at each free node, in amperes (B, n): the size
        of the currents that cancel there, what a relative residual tolerance refers to."""
        c = self.circuit
        Ka = np.abs(K)
        rn = np.zeros_like(v)
        for blk, f, a, off, ref, scale in self._nl:
            u = blk.sign * (a * v[:, f] + off - src[:, [ref]])
            np.add.at(rn, (slice(None), f), np.abs(scale * a * blk.device.current(u)[0]))
        return (np.abs(v) @ Ka + np.abs(cvec) + np.abs(inj) + rn) / c.free_scale

    def power(self, G_list, v, src) -> np.ndarray:
        """Power dissipated in the circuit (B,), W."""
        return dissipated_power(self.circuit, G_list, v, src)

    def source_currents(self, G_list, v, src) -> np.ndarray:
        """Current each source delivers into the circuit (B, n_sources), amperes."""
        c = self.circuit
        V = c.terminal_voltages(v, src)
        n_f = c.n_free
        g = np.zeros((V.shape[0], c.n_sources))
        for blk, G in zip(c.dense, G_list):   # only the crossbar columns driven by sources
            cols = c.is_source_term(blk.in_terms)
            if np.any(cols) and blk.cols is not None:
                i_in = xb.currents(blk, G, V[:, blk.out_terms], V[:, blk.in_terms])[1]
                g[:, blk.in_terms[cols] - n_f] += i_in[:, cols]
            elif np.any(cols):
                Gc = G[:, cols]
                g[:, blk.in_terms[cols] - n_f] += V[:, blk.in_terms[cols]] * Gc.sum(0) - V[:, blk.out_terms] @ Gc
        for blk in c.nonlinear:
            u = device_branch_voltages(c, blk, V)
            current, _ = blk.device.current(u)
            g[:, blk.ref_term - n_f] -= blk.sign * current.sum(1)
        return g

    @single_blas_thread
    def linear_response(self, G_list, v, src, currents) -> np.ndarray:
        """Δv = (K + diag(d(v)))⁻¹·(injected currents): the first-order change of the state v
        when nudging currents I_k (B, n_outputs) are switched on, one Newton step from an
        operating point. EP starts its nudged phases from v ± Δv, which leaves them a
        correction of order β² (measured on the Fashion block: 1e-11 V, below tol_v, so
        one Newton iteration instead of two)."""
        c = self.circuit
        stack = self._stack
        d = np.zeros_like(v)
        stack.add_to(np.zeros_like(v), d, stack.branch(v, stack.offsets(src)), energy=False)
        return self.linear_solve(G_list, d, c.nudge_currents(currents) * c.free_scale,
                                 precond=self._preconditioner(src))

    def hessian_diagonal(self, v, src) -> np.ndarray:
        """Device part d(v) of the Hessian K + diag(d) at a state."""
        return self._devices(v, src, want_energy=False)[1]

    def residual(self, G_list, v, src, nudge=None) -> np.ndarray:
        """Gradient of F with respect to the free voltages (scaled KCL residual)."""
        c = self.circuit
        L = self._linear(G_list)
        inj = 0.0 if nudge is None else c.nudge_currents(nudge) * c.free_scale
        rn, _, _ = self._devices(v, src, want_energy=False)
        return v @ L["Kop"] + self._offset_residual(G_list, src) + rn - inj


def total_energy(circuit: CompiledCircuit, G_list, v, src, nudge=None) -> np.ndarray:
    """Total co-content E (docs/design.md) per sample, minus Σ s·I·V when nudging currents are
    given (then it is F, the function the operating point makes stationary)."""
    V = circuit.terminal_voltages(np.asarray(v, float), np.asarray(src, float))
    E = np.zeros(V.shape[0])
    for blk, G in zip(circuit.dense, G_list):
        E += 0.5 * xb.quadratic(blk, blk.scaled(G), V[:, blk.out_terms], V[:, blk.in_terms])
    for blk in circuit.nonlinear:
        u = device_branch_voltages(circuit, blk, V)
        E += (blk.scale * blk.device.cocontent(u)).sum(1)
    E += 0.5 * circuit.gmin * ((V[:, : circuit.n_free] ** 2) * circuit.free_scale).sum(1)
    if nudge is not None:
        inj = circuit.nudge_currents(np.asarray(nudge, float)) * circuit.free_scale
        E -= (inj * V[:, : circuit.n_free]).sum(1)
    return E
