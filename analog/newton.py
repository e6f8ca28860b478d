"""The native engine's Newton iteration on F(v) (analog/native.py has the method and the
convergence rule), written to cost little per iteration at training batch sizes (64
samples), where numpy's per-call overhead, not arithmetic, dominates:

* everything that depends only on the source voltages (the devices' branch-voltage
  offsets, the linear residual's affine part minus the nudging currents) is computed once
  per solve, not per iteration;
* each device layer is evaluated once per trial point: current, conductance and
  co-content together (one exponential for an ideal Shockley diode);
* the branch voltages at the current point are kept, so the junction limiting of a step
  needs no second evaluation of them;
* the conductance-dependent matrices arrive factored into a `SchurSolver` once per solve;
* where the Schur complement is solved by conjugate gradients, each sample's inverse from
  an earlier iteration preconditions the next (`_StepSolver`).
"""
from __future__ import annotations

import numpy as np

from . import fused
from .devices import ShockleyDiode
from .relax import relax_eliminated
from .schur import PRECOND_MAX_STEP, as_slice


def _plain_shockley(device) -> bool:
    return type(device) is ShockleyDiode and bool(np.all(np.asarray(device.RS) == 0.0))


def device_values(device, u: np.ndarray, energy: bool, plain_shockley: bool | None = None):
    """(I(u), dI/du, co-content or None) of a device layer at branch voltages u."""
    if plain_shockley if plain_shockley is not None else _plain_shockley(device):
        vte, IS = device.vte, device.IS
        e = np.exp(np.minimum(u / vte, 700.0))
        em1 = e - 1.0    # as the current; the co-content's rounding error is ≈ IS·Vt·1e-16 J
        return IS * em1, (IS / vte) * e, (IS * vte * em1 - IS * u if energy else None)
    current, cond = device.current(u)
    return current, cond, (device.cocontent(u) if energy else None)


class DeviceStack:
    """The circuit's device layers, grouped: layers whose devices are equal and have no
    per-element parameters are evaluated as one array (the up and down diodes of a hidden
    layer: one exponential over both).

    Device k has branch voltage u = sa·v[:, f] + c(src): sa = sign·coef, c = sign·(offset −
    bias source); it adds w_r·I(u) to the residual at node f, w_d·dI/du to the Hessian
    diagonal and scale·co-content to F."""

    def __init__(self, circuit, term_free, term_coef, term_offset):
        groups: list[tuple] = []
        for blk in circuit.nonlinear:
            match = [g for g in groups if blk.device.size is None and g[0] == blk.device]
            if match:
                match[0][1].append(blk)
            else:
                groups.append((blk.device, [blk]))
        self.groups = [self._group(dev, blks, circuit, term_free, term_coef, term_offset) for dev, blks in groups]
        self.limiting = [i for i, g in enumerate(self.groups) if g["limit"]]

    @staticmethod
    def _group(device, blks, circuit, term_free, term_coef, term_offset) -> dict:
        def cat(parts):   # per-layer numbers or arrays → one array over the group's devices
            return np.concatenate([np.broadcast_to(np.asarray(p, float), (len(b.node_terms),))
                                   for p, b in zip(parts, blks)])

        f = np.concatenate([term_free[b.node_terms] for b in blks])
        a = np.concatenate([term_coef[b.node_terms] for b in blks])
        sign = cat([b.sign for b in blks])
        scale = cat([b.scale for b in blks])
        bounds = np.cumsum([0] + [len(b.node_terms) for b in blks])
        g = dict(device=device, f=f, sa=sign * a, sign=sign, scale=scale, w_r=scale * sign * a, w_d=scale * a * a,
                 off=sign * np.concatenate([term_offset[b.node_terms] for b in blks]),
                 ref=np.concatenate([np.full(len(b.node_terms), b.ref_term - circuit.n_free) for b in blks]),
                 parts=[(slice(lo, hi), as_slice(term_free[b.node_terms])) for lo, hi, b in zip(bounds, bounds[1:], blks)],
                 plain=_plain_shockley(device), limit=bool(device.needs_limiting))
        if all(isinstance(fp, slice) for _, fp in g["parts"]):   # gather by slices, not fancy indexing
            g["gather"] = [fp for _, fp in g["parts"]]
        if g["plain"]:   # pnjlim acts only above the critical voltage, on steps over 2·N·Vt
            vte, IS = device.vte, device.IS
            g["vcrit"], g["two_vte"] = vte * np.log(vte / (np.sqrt(2.0) * IS)), 2.0 * vte
            g["sa_max"] = float(np.abs(g["sa"]).max()) if len(f) else 0.0
            # I = IS·(e − 1), dI/du = (IS/vte)·e, co-content IS·vte·(e − 1) − IS·u with e = exp(u/vte):
            # the constant factors folded into the weights, the energy summed by two products
            g["inv_vte"], g["r_em1"], g["d_e"] = 1.0 / vte, g["w_r"] * IS, g["w_d"] * IS / vte
            g["e_em1"], g["e_u"] = scale * IS * vte, -scale * IS
        return g

    def offsets(self, src: np.ndarray) -> list[np.ndarray]:
        """Per group, the constant part of its branch voltages for these sources (B, n_g)."""
        return [g["off"] - g["sign"] * src[:, g["ref"]] for g in self.groups]

    def branch(self, v, offsets) -> list[np.ndarray]:
        us = []
        for g, c in zip(self.groups, offsets):
            if "gather" in g:     # by slices, straight into the group's array (no concatenation)
                u = np.empty_like(c)
                for (sl, _), f in zip(g["parts"], g["gather"]):
                    np.multiply(v[:, f], g["sa"][sl], out=u[:, sl])
                us.append(np.add(u, c, out=u))
            else:
                us.append(g["sa"] * v[:, g["f"]] + c)
        return us

    def add_to(self, r: np.ndarray, d: np.ndarray, us, energy: bool):
        """Add the devices at branch voltages `us` to the residual r and the Hessian
        diagonal d (in place); return their energy (B,) (zeros unless `energy`)."""
        e = np.zeros(len(r))
        for g, u in zip(self.groups, us):
            if g["plain"]:      # in place: four (B, n_g) temporaries fewer per evaluation
                ex = np.multiply(u, g["inv_vte"])
                np.exp(np.minimum(ex, 700.0, out=ex), out=ex)
                em1 = ex - 1.0
                if energy:
                    e += em1 @ g["e_em1"] + u @ g["e_u"]
                ri, di = np.multiply(em1, g["r_em1"], out=em1), np.multiply(ex, g["d_e"], out=ex)
            else:
                current, cond, co = device_values(g["device"], u, energy, False)
                ri, di = g["w_r"] * current, g["w_d"] * cond
                if energy:
                    e += co @ g["scale"]
            for sl, f in g["parts"]:
                r[:, f] += ri[:, sl]
                d[:, f] += di[:, sl]
        return e

    def step_scale(self, us, step) -> np.ndarray:
        """SPICE pnjlim on the limiting groups, as one factor α ≤ 1 on each sample's step."""
        alpha = np.ones(len(step))
        big = np.abs(step).max()
        for i in self.limiting:
            g = self.groups[i]
            if g["plain"] and big * g["sa_max"] < g["two_vte"] * (1.0 - 1e-9):
                continue          # no branch voltage moves by 2·N·Vt: nothing to limit
            u_old = us[i]
            u_new = u_old + g["sa"] * _gather(step, g)
            du = u_new - u_old    # not sa·step: the unlimited ratio below must be exactly 1
            if g["plain"] and not ((u_new > g["vcrit"]) & (np.abs(du) > g["two_vte"])).any():
                continue          # no junction limited: α stays 1
            lim = g["device"].limit(u_old, u_new)
            ratio = np.where(np.abs(du) > 0, (lim - u_old) / np.where(du == 0, 1, du), 1.0)
            alpha = np.minimum(alpha, np.clip(ratio, 1e-6, 1.0).min(1))
        return alpha


def _gather(v: np.ndarray, g: dict) -> np.ndarray:
    if "gather" in g:
        return np.concatenate([v[:, s] for s in g["gather"]], axis=1)
    return v[:, g["f"]]


class _StepSolver:
    """The Newton direction's linear solve; when the partition calls for it, it carries
    each active sample's inverse Schur complement from one iteration to the next as the
    conjugate-gradient preconditioner (analog/schur.py), renewed after a step over
    PRECOND_MAX_STEP volts."""

    def __init__(self, schur, B: int, precond, keep_last: bool):
        self.schur = schur
        self.carry = schur.keeps_preconditioner(B)
        self.Minv = precond if self.carry and precond is not None and len(precond) == B else None
        self.last = np.empty((B, len(schur.R), len(schur.R))) if self.carry and keep_last else None
        self.moved = None

    def direction(self, d, r) -> np.ndarray:
        if not self.carry:
            return -self.schur.solve(d, r)
        x, self.Minv = self.schur.solve_keep(d, r, self.Minv, refresh=self.moved)
        return -x

    def stepped(self, taken: np.ndarray) -> None:
        self.moved = np.abs(taken).max(1) > PRECOND_MAX_STEP

    def moved_by(self, delta: np.ndarray) -> None:
        """A move between iterations (not a Newton step) that may also call for renewal."""
        if self.moved is not None:
            self.moved |= np.abs(delta).max(1) > PRECOND_MAX_STEP

    def retire(self, active: np.ndarray, keep: np.ndarray) -> None:
        """Samples leaving the iteration (~keep): keep their last inverses."""
        if self.Minv is None or keep.all():
            return
        if self.last is not None:
            self.last[active[~keep]] = self.Minv[~keep]
        self.Minv, self.moved = self.Minv[keep], self.moved[keep]

    def finish(self, active: np.ndarray, kept: dict | None) -> None:
        if self.last is not None and kept is not None:
            if len(active) and self.Minv is not None:
                self.last[active] = self.Minv
            kept["precond"] = self.last


class _Evaluator:
    """F, its gradient r, the Hessian diagonal d and the branch voltages at states vv of the
    active samples (or of those at positions `sub` among them); what depends only on the
    sources is kept for the active samples alone, compacted as samples leave."""

    def __init__(self, K, stack, lin_offset, offs, plan=None):
        self.K, self.stack, self.c, self.offs = K, stack, lin_offset, offs
        self.plan = plan      # analog/fused.py's compiled pass, where it applies

    def keep(self, keep: np.ndarray) -> None:
        self.c, self.offs = self.c[keep], [o[keep] for o in self.offs]

    def __call__(self, vv, sub=None):
        c = self.c if sub is None else self.c[sub]
        if self.plan is not None:
            return fused.evaluate(self.plan, self.K, vv, c, self.offs[0] if sub is None else self.offs[0][sub])
        Kv = vv @ self.K
        us = self.stack.branch(vv, self.offs if sub is None else [o[sub] for o in self.offs])
        r = Kv + c
        d = np.zeros_like(vv)
        e = self.stack.add_to(r, d, us, energy=True)
        F = ((0.5 * Kv + c) * vv).sum(1) + e
        return F, r, d, us


def damped_newton(engine, lin, src, cvec, inj, v0, precond=None, kept=None, relax=False):
    """Minimise F from v0 for one chunk: `lin` the engine's conductance-dependent cache,
    cvec = c(src) the linear residual's affine part, inj the injected (nudging) currents,
    both (B, n) and scaled; `precond`, per-sample inverses of the Schur complement at
    nearby states (analog/schur.py), or None; `relax`: after the first iteration, relax
    the eliminated nodes (analog/relax.py; for a cold start). Returns (v, converged,
    iterations); when `kept` is a dict, the inverses at each sample's last iteration go to
    kept["precond"]."""
    stack = engine._stack
    B = len(src)
    solver = _StepSolver(lin["schur"], B, precond, kept is not None)
    v = v0.copy()
    converged = np.zeros(B, bool)
    iterations = np.zeros(B, int)
    active = np.arange(B)
    if "fused" not in lin:
        lin["fused"] = fused.fused_plan(lin["schur"], stack)
    evaluate = _Evaluator(lin["Kop"], stack, cvec - inj, stack.offsets(src), lin["fused"])
    with np.errstate(over="ignore", invalid="ignore"):
        F, r, d, us = evaluate(v)
        for _ in range(engine.max_iter):
            if len(active) == 0:
                break
            iterations[active] += 1
            step = solver.direction(d, r)
            v_act = v[active]
            alpha = stack.step_scale(us, step) if stack.limiting else np.ones(len(active))
            slope = (r * step).sum(1)
            F_new, r_new, d_new, us_new, accepted = _line_search(evaluate, v_act, step, alpha, F, slope)
            v_new = v_act + alpha[:, None] * step
            v[active] = v_new
            solver.stepped(alpha[:, None] * step)
            if not accepted.all():   # line search exhausted: go on from the tiny step taken
                j = np.flatnonzero(~accepted)
                F_new[j], r_new[j], d_new[j], uj = evaluate(v_new[j], j)
                for u_all, u_j in zip(us_new, uj):
                    u_all[j] = u_j
            bad = ~np.isfinite(step).all(1)
            small = (alpha == 1.0) & (np.abs(step).max(1) < engine.tol_v) & ~bad
            done = small.copy()
            if small.any():
                i = active[small]
                done[small] = engine._kcl_ok(v_new[small], src[i], r_new[small], lin, cvec[i], inj[i])
            converged[active[done]] = True
            keep = ~(done | bad)
            solver.retire(active, keep)
            if keep.all():
                F, r, d, us = F_new, r_new, d_new, us_new
            else:
                active = active[keep]
                evaluate.keep(keep)
                F, r, d, us = F_new[keep], r_new[keep], d_new[keep], [u[keep] for u in us_new]
            if relax and len(active) and lin["schur"].exact:
                relax, v_act = False, v[active]
                v[active], F, r, d, us = relax_eliminated(evaluate, lin["schur"], v_act, F, r, d, us)
                solver.moved_by(v[active] - v_act)
    solver.finish(active, kept)
    return v, converged, iterations


def _line_search(evaluate, v_act, step, alpha, F, slope):
    """Armijo backtracking (halving α, up to 60 times) on every sample of the step; α is
    updated in place. The common case, every full step accepted, costs one evaluation."""
    n = len(v_act)
    Ft, rt, dt, ut = evaluate(v_act + alpha[:, None] * step)
    ok = np.isfinite(Ft) & (Ft - F <= 1e-4 * alpha * slope + 1e-12 * np.abs(F) + 1e-300)
    if ok.all():
        return Ft, rt, dt, ut, ok
    accepted = np.zeros(n, bool)
    F_new, r_new, d_new = np.empty(n), np.empty_like(rt), np.empty_like(dt)
    us_new = [np.empty_like(u) for u in ut]
    todo = np.arange(n)
    for attempt in range(60):
        if attempt:
            todo = np.flatnonzero(~accepted)
            if len(todo) == 0:
                break
            Ft, rt, dt, ut = evaluate(v_act[todo] + alpha[todo, None] * step[todo], todo)
            tol = 1e-12 * np.abs(F[todo]) + 1e-300
            ok = np.isfinite(Ft) & (Ft - F[todo] <= 1e-4 * alpha[todo] * slope[todo] + tol)
        acc = todo[ok]
        F_new[acc], r_new[acc], d_new[acc] = Ft[ok], rt[ok], dt[ok]
        for u_all, u_t in zip(us_new, ut):
            u_all[acc] = u_t[ok]
        accepted[acc] = True
        alpha[todo[~ok]] *= 0.5
    return F_new, r_new, d_new, us_new, accepted
