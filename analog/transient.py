"""Transient simulation on the native engine: the circuit's ODE with a capacitance at every
free node, integrated by an implicit method with Newton at each step, batched over samples.

The ODE. With C_n the capacitance of free node n to ground and KCL_n(v, t) the net current
leaving n through the circuit's elements (the DC engines' residual divided by the node's
energy scale s_n),

    C_n dv_n/dt = −KCL_n(v, t)   ⇔   s_n C_n dv_n/dt = −∂F/∂v_n,

so the free dynamics are a gradient flow of the energy F (docs/design.md): dF/dt =
−Σ (∂F/∂v_n)² / (s_n C_n) ≤ 0 while the sources hold still, and every transient ends at the
DC operating point.

Methods (`method`):
* "be", backward Euler: v_{k+1} solves s C (v − v_k)/h + ∇F(v, t_{k+1}) = 0, which is the
  minimum of the convex function F(v) + Σ s C (v − v_k)² / (2h): the DC problem with an
  extra conductance C/h to a source at v_k. So the engine's own pieces (residual, Hessian
  diagonal, linear solve on K + diag(d)) give Newton's step, and a backtracking line search
  on that function makes every step go downhill. L-stable (stiff modes are damped, not
  ringing), first order; ngspice's `method=gear maxord=1` is the same scheme.
* "midpoint", implicit midpoint: the same solve at t_k + h/2 with step h/2 gives v_{k+½}, and
  v_{k+1} = 2 v_{k+½} − v_k. Second order, and its energy bookkeeping is exact: the energy
  the sources deliver at the midpoints equals the dissipation there plus the change of
  ½ C v² (analog/inference_energy.py uses it).

Inputs switch as a ramp: every source moves linearly from `src_start` (the circuit at rest
at its operating point there) to `src_end` over `rise` seconds, then holds.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import AnalogInputError
from .native import total_energy

METHODS = ("be", "midpoint")


@dataclass(frozen=True)
class TransientSpec:
    """duration and dt (s) of the fixed grid, rise (s) of the input ramp, method, Newton's
    step tolerance tol_v (V) and iteration budget per time step."""
    duration: float = 5e-9
    dt: float = 5e-12
    rise: float = 10e-12
    method: str = "be"
    tol_v: float = 1e-10
    max_iter: int = 50

    def __post_init__(self):
        for key in ("duration", "dt", "tol_v"):
            value = getattr(self, key)
            if not (np.isfinite(value) and value > 0):
                raise AnalogInputError(f"transient.{key}={value!r} must be a finite number > 0")
        if not (np.isfinite(self.rise) and self.rise >= 0):
            raise AnalogInputError(f"transient.rise={self.rise!r} must be a finite number >= 0")
        if self.dt >= self.duration:
            raise AnalogInputError(f"transient.dt={self.dt!r} must be below transient.duration={self.duration!r}")
        if self.method not in METHODS:
            raise AnalogInputError(f"transient.method={self.method!r}: expected one of {list(METHODS)}")

    def times(self) -> np.ndarray:
        n = int(np.ceil(self.duration / self.dt - 1e-9))
        return np.minimum(np.arange(n + 1) * self.dt, self.duration)


def ramp(src_start: np.ndarray, src_end: np.ndarray, t: float, rise: float) -> np.ndarray:
    """Source voltages at time t: linear from src_start to src_end over [0, rise]."""
    frac = 1.0 if rise <= 0 or t >= rise else t / rise
    return src_start + frac * (src_end - src_start)


@dataclass
class StepRecord:
    """What the integrator hands to a probe after each step: the new state v (B, n) at time
    t, and the state and time at which the step's currents act (v_eval, t_eval: the end
    point for backward Euler, the midpoint for the midpoint rule), h the step."""
    k: int
    t: float
    h: float
    v: np.ndarray
    v_prev: np.ndarray
    v_eval: np.ndarray
    t_eval: float
    src_eval: np.ndarray
    nudge_eval: np.ndarray | None = None


@dataclass
class TransientResult:
    times: np.ndarray                 # (T,)
    outputs: np.ndarray               # (T, B, n_outputs) differential outputs
    v_final: np.ndarray               # (B, n_free)
    converged: np.ndarray             # (B,) every step's Newton converged
    iterations: np.ndarray            # (B,) Newton iterations summed over the steps
    voltages: np.ndarray | None = None   # (T, B, n_free) when kept
    extras: dict = field(default_factory=dict)


class NativeTransient:
    """Transient simulator on a NativeEngine's circuit with node capacitances C (n_free,)."""

    def __init__(self, engine, capacitance: np.ndarray, spec: TransientSpec | None = None):
        from .capacitance import check_capacitance
        self.engine = engine
        self.circuit = engine.circuit
        self.C = check_capacitance(capacitance, self.circuit.n_free)
        self.spec = spec or TransientSpec()
        self._shifted_key = None

    def run(self, G_list, src_end, src_start=None, *, times=None, nudge=None, nudge_start=None, v_start=None,
            keep_voltages=False, probe=None, stop=None) -> TransientResult:
        """Integrate from the operating point at src_start (default: every input at V_ref,
        x = 0) to src_end (B, n_sources) over `times` (default: the spec's grid). The nudging
        currents ramp from nudge_start to nudge with the sources (both None: no nudge; only
        nudge: held from t = 0). v_start (B, n_free), when given, is the state at t = 0 instead
        of that operating point (a phase that starts where the last one was cut short).
        `probe(rec)` is called after every step (energy accounting, settling); the run ends
        early when `stop(rec)` returns True (the result then holds the time points reached)."""
        c, eng, spec = self.circuit, self.engine, self.spec
        src_end = np.asarray(src_end, float)
        B = src_end.shape[0]
        if src_start is None:
            src_start = c.source_voltages(np.zeros((B, c.n_features)))
        times = spec.times() if times is None else np.asarray(times, float)
        if nudge is not None and nudge_start is None:
            nudge_start = nudge
        if v_start is None:
            start = eng.solve(G_list, src=src_start, nudge=nudge_start)
            v, conv = np.array(start.v, float), np.array(start.converged, bool)
        else:
            v, conv = np.array(v_start, float), np.isfinite(v_start).all(1)
        iters = np.zeros(B, int)
        outs = [c.outputs(v)]
        volts = [v.copy()] if keep_voltages else None
        sC = c.free_scale * self.C
        lin = _fast_pieces(eng, G_list)
        # the linear residual's affine part is affine in the sources, which ramp linearly:
        # two products per run instead of one per step
        self._c_ends = None if lin is None else (src_start @ lin["Cop"] + lin["c0"], src_end @ lin["Cop"] + lin["c0"])
        v_before = None
        for k in range(1, len(times)):
            t, h = times[k], times[k] - times[k - 1]
            if h <= 0:
                raise AnalogInputError(f"transient time points must increase (step {k}: {times[k - 1]} → {t})")
            guess = v if v_before is None else v + (v - v_before) * (h / h_prev)
            t_eval = t if spec.method == "be" else times[k - 1] + 0.5 * h
            src_eval = ramp(src_start, src_end, t_eval, spec.rise)
            nd = None if nudge is None else ramp(nudge_start, nudge, t_eval, spec.rise)
            if spec.method == "be":
                v_eval, ok, it = self._implicit(G_list, src_eval, nd, sC / h, v, guess, t_eval)
                v_new = v_eval
            else:
                v_eval, ok, it = self._implicit(G_list, src_eval, nd, 2.0 * sC / h, v, 0.5 * (v + guess), t_eval)
                v_new = 2.0 * v_eval - v
            conv &= ok
            iters += it
            if probe is not None:
                probe(StepRecord(k, t, h, v_new, v, v_eval, t_eval, src_eval, nd))
            v_before, v, h_prev = v, v_new, h
            outs.append(c.outputs(v))
            if keep_voltages:
                volts.append(v.copy())
            if stop is not None and stop(StepRecord(k, t, h, v, v_before, v, t, src_eval, nd)):
                times = times[: k + 1]
                break
        v_final = v.copy()
        v_final[~conv] = np.nan
        return TransientResult(times=times, outputs=np.array(outs), v_final=v_final, converged=conv,
                               iterations=iters, voltages=None if volts is None else np.array(volts))

    def _implicit(self, G_list, src, nudge, a, v_prev, guess, t):
        """Minimise φ(v) = F(v) + Σ a (v − v_prev)²/2 per sample (a = s·C/h, (n,)) by damped
        Newton from `guess`. Returns (v, converged (B,), iterations (B,))."""
        fast = _fast_pieces(self.engine, G_list)
        if fast is not None:
            c0, c1 = self._c_ends
            frac = 1.0 if self.spec.rise <= 0 or t >= self.spec.rise else t / self.spec.rise
            return self._implicit_fast(fast, src, c0 + frac * (c1 - c0), nudge, a, v_prev, guess)
        return self._implicit_public(G_list, src, nudge, a, v_prev, guess)

    def _implicit_fast(self, lin, src, c_src, nudge, a, v_prev, guess):
        """The engine's own Newton iteration (analog/newton.py) on K + diag(a) with the linear
        residual's affine part shifted by −a·v_prev: one call per time step."""
        from .newton import damped_newton
        c = self.circuit
        key = (id(lin), a.tobytes())
        if self._shifted_key != key:
            self._shifted = dict(lin, K=lin["K"] + np.diag(a), Kop=_ShiftedK(lin["Kop"], a),
                                 schur=_ShiftedSchur(lin["schur"], a))
            self._shifted_key = key
        cvec = c_src - a * v_prev
        inj = np.zeros_like(v_prev) if nudge is None else c.nudge_currents(nudge) * c.free_scale
        saved = self.engine.max_iter
        self.engine.max_iter = self.spec.max_iter
        try:
            return damped_newton(self.engine, self._shifted, src, cvec, inj, np.array(guess, float))
        finally:
            self.engine.max_iter = saved

    def _implicit_public(self, G_list, src, nudge, a, v_prev, guess):
        """The same minimisation through the engine's public methods only (residual, Hessian
        diagonal, linear solve) with a backtracking line search on φ: any engine that offers them."""
        eng, c, spec = self.engine, self.circuit, self.spec
        B = len(v_prev)
        v = np.array(guess, float)
        conv = np.zeros(B, bool)
        iters = np.zeros(B, int)
        active = np.arange(B)

        def phi(vv, idx):
            nd = None if nudge is None else nudge[idx]
            return total_energy(c, G_list, vv, src[idx], nd) + 0.5 * ((vv - v_prev[idx]) ** 2 * a).sum(1)

        with np.errstate(over="ignore", invalid="ignore"):
            for _ in range(spec.max_iter):
                if len(active) == 0:
                    break
                iters[active] += 1
                vv, s_a = v[active], src[active]
                nd = None if nudge is None else nudge[active]
                r = eng.residual(G_list, vv, s_a, nd) + a * (vv - v_prev[active])
                d = eng.hessian_diagonal(vv, s_a) + a
                step = -eng.linear_solve(G_list, d, r)
                alpha = _armijo(phi, vv, step, (r * step).sum(1), active)
                v[active] = vv + alpha[:, None] * step
                bad = ~np.isfinite(step).all(1)
                done = (alpha == 1.0) & (np.abs(step).max(1) < spec.tol_v) & ~bad
                conv[active[done]] = True
                active = active[~(done | bad)]
        return v, conv, iters


def _fast_pieces(engine, G_list):
    """The native engine's conductance cache (K, its Schur solver, the source map), when the
    engine has one; None otherwise (the public path is used)."""
    linear = getattr(engine, "_linear", None)
    if linear is None or not hasattr(engine, "_stack"):
        return None
    lin = linear(G_list)
    return lin if all(k in lin for k in ("K", "Kop", "schur", "Cop", "c0")) else None


class _ShiftedK:
    """K + diag(a) as the right operand of `v @ ·` (K itself may be dense or CSR)."""
    __array_ufunc__ = None

    def __init__(self, K, a):
        self.K, self.a = K, a

    def __rmatmul__(self, v):
        return v @ self.K + v * self.a


class _ShiftedSchur:
    """The engine's Schur solver for K + diag(a + d)."""

    def __init__(self, base, a):
        self.base, self.a = base, a

    def keeps_preconditioner(self, batch: int) -> bool:
        return False      # a time step's Newton solves directly: its matrix changes with dt

    def solve(self, d, rhs, cholesky=None):
        return self.base.solve(d + self.a, rhs) if cholesky is None else self.base.solve(d + self.a, rhs, cholesky)


def _armijo(phi, v, step, slope, idx) -> np.ndarray:
    """Step length per sample: 1 when φ decreases enough (Armijo), else halved up to 40 times."""
    alpha = np.ones(len(v))
    f0 = phi(v, idx)
    todo = np.arange(len(v))
    for _ in range(40):
        ft = phi(v[todo] + alpha[todo, None] * step[todo], idx[todo])
        ok = np.isfinite(ft) & (ft - f0[todo] <= 1e-4 * alpha[todo] * slope[todo] + 1e-12 * np.abs(f0[todo]) + 1e-300)
        todo = todo[~ok]
        if len(todo) == 0:
            break
        alpha[todo] *= 0.5
    return alpha
