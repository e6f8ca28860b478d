"""How far continual EP's accumulated update (analog/cep.py) strays from the exact gradient
on a block and a batch, and why (docs/transient.md, "Where C-EP's cosine limit comes from";
`mixsig cep` prints it).

EP rows: EP's own cosine to the exact implicit gradient against β (its finite-β bias and
float precision), per layer, with the fraction of diodes conducting at the +β point and the
nudge's largest node displacement. C-EP rows, per (β, K, η): the cosine of the accumulated
update, its deviation from EP, how far the conductances moved and how many hit a bound.
With `diagnose`, also the predictions made without the C-EP loop from the free point's echo
M (feedback_response): first order EP + η (K − 1)/K · M·EP, the series
Σ_{j<K} (K − j)/K (ηM)^j EP and η ρ (the series diverges at η ρ ≥ 1); with `nudged`, the
series with the echo read at the nudged points (`nudged_series`).
"""
from __future__ import annotations

import numpy as np

from .cep import cep_gradients, cosine, feedback_response, feedback_series, sgd_update
from .ep import ep_estimate, ep_gradients, exact_gradients


def conducting(model, engine, G, x, y=None, beta: float = 0.0, threshold: float = 0.35) -> float:
    """Fraction of diodes whose forward voltage exceeds `threshold` V at the free point (or,
    with labels y and β > 0, at the +β nudged point)."""
    c = model.circuit
    sol = engine.solve(G, x)
    if beta > 0:
        _, dC_dy = model.loss(c.outputs(sol.v), y)
        sol = engine.solve(G, src=sol.src, nudge=-beta * dC_dy, v0=sol.v)
    V = c.terminal_voltages(sol.v, sol.src)
    on = [(blk.sign * (V[:, blk.node_terms] - V[:, [blk.ref_term]]) > threshold).ravel() for blk in c.nonlinear]
    return float(np.concatenate(on).mean()) if on else 0.0


def nudge_displacement(model, engine, G, x, y, beta: float) -> float:
    """The largest node voltage change (V) the +β nudge causes."""
    free = engine.solve(G, x)
    _, dC_dy = model.loss(model.circuit.outputs(free.v), y)
    return float(np.abs(engine.solve(G, src=free.src, nudge=-beta * dC_dy, v0=free.v).v - free.v).max())


def nudged_series(model, engine, G0, x, y, beta: float, bounds, eta: float, K: int, eps: float = 1e-3):
    """C-EP's accumulated update linearised in the conductance change D_t applied before step
    t, with each step's echo read where C-EP reads it, at its nudged operating point:
    g_t = e_t + R_t(D_t) − R_{t−1}(D_{t−1}), e_t EP's increment between nudge levels t − 1 and
    t at G0, R_t(D) the change of the estimate's ΔV² at level t for a change D (a central
    difference of two nudged solves), D_{t+1} = D_t − η (g_max − g_min)² g_t (no clipping)."""
    c = model.circuit
    free = engine.solve(G0, x)
    _, dC_dy = model.loss(c.outputs(free.v), y)
    levels = [-beta * dC_dy * (2 * t / K - 1) for t in range(K + 1)]     # −β … +β (symmetric)
    w = np.full(len(x), 1.0 / len(x))

    def volts(level, G):
        sol = engine.solve(G, src=free.src, nudge=level, v0=free.v)
        return c.terminal_voltages(sol.v, sol.src)

    def resp(t, D):
        h = eps * max(np.abs(g).max() for g in G0) / max(np.abs(d).max() for d in D)
        Vp, Vm = volts(levels[t], [g + h * d for g, d in zip(G0, D)]), volts(levels[t], [g - h * d for g, d in zip(G0, D)])
        return [r / (2 * h) for r in ep_estimate(engine, G0, Vp, Vm, w, beta, "symmetric")]
    base = [volts(level, G0) for level in levels]
    D, before = [np.zeros_like(g) for g in G0], [np.zeros_like(g) for g in G0]
    total = [np.zeros_like(g) for g in G0]
    for t in range(1, K + 1):
        now = resp(t, D) if t > 1 else [np.zeros_like(g) for g in G0]
        e_t = ep_estimate(engine, G0, base[t], base[t - 1], w, beta, "symmetric")
        g_t = [e + a - b for e, a, b in zip(e_t, now, before)]
        total = [a + g for a, g in zip(total, g_t)]
        D = [d - eta * (hi - lo) ** 2 * g for d, g, (lo, hi) in zip(D, g_t, bounds)]
        before = now
    return total


def _norm(a_list) -> float:
    return float(np.sqrt(sum(np.sum(np.square(a)) for a in a_list)))


def _rel(a_list, ref) -> float:
    return _norm([a - b for a, b in zip(a_list, ref)]) / _norm(ref)


def ep_rows(model, x, y, betas) -> list[dict]:
    """EP against the exact gradient at the model's conductances, one row per β."""
    eng, G = model.get_engine("native"), [g.copy() for g in model.conductances]
    exact = exact_gradients(eng, model.circuit, G, x, y, model.loss).grads
    rows = []
    for beta in betas:
        ep = ep_gradients(eng, model.circuit, G, x, y, model.loss, beta, "symmetric").grads
        rows.append({"beta": beta, "cosine": cosine(ep, exact), "layers": [cosine([a], [b]) for a, b in zip(ep, exact)],
                     "conducting": conducting(model, eng, G, x, y, beta),
                     "displacement": nudge_displacement(model, eng, G, x, y, beta)})
    return rows


def cep_rows(model, x, y, beta: float, steps, etas, *, clip: bool = True, diagnose: bool = False,
             nudged: bool = False) -> list[dict]:
    """C-EP (symmetric nudging, `sgd_update` steps of η) against the exact gradient at the
    model's conductances, one row per (K, η), the model left unchanged."""
    m, eng = model, model.get_engine("native")
    G0, bounds = [g.copy() for g in m.conductances], [(layer.g_min, layer.g_max) for layer in m.dense_layers]
    exact = exact_gradients(eng, m.circuit, G0, x, y, m.loss).grads
    ep = ep_gradients(eng, m.circuit, G0, x, y, m.loss, beta, "symmetric").grads
    echo = feedback_response(eng, m.circuit, G0, x, ep, beta, bounds) if diagnose else None
    rows = []
    for K in steps:
        for eta in etas:
            G = [g.copy() for g in G0]
            res = cep_gradients(eng, m.circuit, G0, x, y, m.loss, beta, "symmetric", steps=K,
                                update=sgd_update(G, eta, bounds, clip=clip))
            row = {"beta": beta, "steps": K, "eta": eta, "cosine": cosine(res.grads, exact),
                   "layers": [cosine([a], [b]) for a, b in zip(res.grads, exact)], "deviation": _rel(res.grads, ep),
                   "moved": max(np.abs(a - b).max() / hi for a, b, (_, hi) in zip(G, G0, bounds)),
                   "clipped": sum(int(((g <= lo) | (g >= hi)).sum() - ((g0 <= lo) | (g0 >= hi)).sum())
                                  for g, g0, (lo, hi) in zip(G, G0, bounds)),
                   "kept": int(res.used.sum())}
            if diagnose:
                series, rho = feedback_series(eng, m.circuit, G0, x, ep, beta, bounds, eta, K)
                row.update(first_order=_rel([b + eta * (K - 1) / K * d for b, d in zip(ep, echo)], ep),
                           series=_rel(series, ep), series_cosine=cosine(series, exact), eta_rho=eta * rho)
            if nudged:
                ns = nudged_series(m, eng, G0, x, y, beta, bounds, eta, K)
                row.update(nudged=_rel(ns, ep), nudged_cosine=cosine(ns, exact))
            rows.append(row)
    return rows
