"""Continual Equilibrium Propagation (C-EP, Ernoult et al. 2020) on the circuit: the
conductances change *during* the nudged phase, in K small steps, each by the local rule
from the voltages present at that moment.

The nudging currents move in K equal steps from their start value (−β·∂C/∂y with
symmetric nudging, 0 with one-sided nudging) to +β·∂C/∂y; the circuit is at equilibrium
after each step (it settles in picoseconds, docs/transient.md, while a programming step
takes far longer). After step t every conductance changes by

    ΔG_t = −η · (s_l / (c β_eff)) · [ ΔV²(t) − ΔV²(t − 1) ]      (c = 4 symmetric, 2 one-sided)

(mean over the mini-batch), which needs only the voltage across the device now and one
step ago. With η → 0 the conductances hardly move during the phase, the sum over t
telescopes to EP's estimate [ΔV²(+β) − ΔV²(start)], and the accumulated update is EP's
update (Ernoult et al., Theorem 1); for larger η the later steps see conductances already
changed, and the accumulated update drifts from the gradient. `cep_gradients` returns that
accumulated estimate Σ_t g_t so that it can be compared with the exact gradient.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ep import ep_estimate
from .native import single_blas_thread


@dataclass
class CEPResult:
    grads: list[np.ndarray]       # Σ_t g_t, the accumulated local estimate of ∂C/∂G
    loss: np.ndarray              # (B,) free-phase cost
    y: np.ndarray                 # free-phase outputs
    free: object                  # free-phase Solution
    used: np.ndarray              # samples that converged in every step
    steps: int


@single_blas_thread
def cep_gradients(engine, circuit, G_list, x, labels, loss, beta: float, nudging: str = "symmetric",
                  steps: int = 10, update=None) -> CEPResult:
    """One C-EP nudged phase on a batch. `update(g_t) -> G_list` applies step t's local
    update to the device and returns the conductances the next step sees; None applies no
    update (η = 0: the conductances stay G_list)."""
    if not (isinstance(steps, (int, np.integer)) and steps >= 1):
        raise ValueError(f"training.cep_steps={steps!r} must be an integer >= 1")
    if nudging not in ("symmetric", "positive"):
        raise ValueError(f"nudging={nudging!r} must be 'symmetric' or 'positive'")
    free = engine.solve(G_list, x)
    y = circuit.outputs(free.v)
    used = free.converged.copy()
    cost, dC_dy = loss(np.where(used[:, None], y, 0.0), labels)
    current = -beta * dC_dy
    start = -current if nudging == "symmetric" else np.zeros_like(current)
    v = np.where(used[:, None], free.v, circuit.vref)
    G = list(G_list)
    if nudging == "symmetric":
        first = engine.solve(G, src=free.src, nudge=start, v0=v)
        used &= first.converged
        v = np.where(used[:, None], first.v, v)
    V_prev = circuit.terminal_voltages(v, free.src)
    acc = [np.zeros(np.shape(g)) for g in G]
    for t in range(1, steps + 1):
        nudge = start + (t / steps) * (current - start)
        sol = engine.solve(G, src=free.src, nudge=nudge, v0=v)
        used &= sol.converged
        v = np.where(used[:, None], sol.v, v)
        V = circuit.terminal_voltages(v, free.src)
        w = used.astype(float) / max(1, used.sum())
        g_t = ep_estimate(engine, G, V, V_prev, w, beta, nudging)
        acc = [a + g for a, g in zip(acc, g_t)]
        if update is not None and used.any():
            G = list(update(g_t))
        V_prev = V
    return CEPResult(acc, np.where(free.converged, cost, np.nan), y, free, used, steps)


def sgd_update(G: list, eta: float, bounds, clip: bool = True):
    """The normalised SGD step the experiments apply (G ← G − η (g_max − g_min)² g_t, in
    place, clipped to the bounds unless `clip` is False), as an `update` for cep_gradients."""
    def update(g_t):
        for k, (lo, hi) in enumerate(bounds):
            G[k] = G[k] - eta * (hi - lo) ** 2 * g_t[k]
            if clip:
                G[k] = np.clip(G[k], lo, hi)
        return G
    return update


def feedback_response(engine, circuit, G_list, x, grads, beta: float, bounds, eps: float = 1e-3,
                      nudging: str = "symmetric") -> list[np.ndarray]:
    """M·g: the change of the EP estimate read at the *free* operating point when the
    conductances take `sgd_update`'s step along g, per unit η (u = −(g_max − g_min)² g). This is
    what a C-EP step reads as its own update's echo: the circuit's response to ΔG, divided by
    β like the nudge's. A central difference of two free solves (step eps of the largest
    conductance), independent of the C-EP loop."""
    u = [-(hi - lo) ** 2 * g for g, (lo, hi) in zip(grads, bounds)]
    h = eps * max(np.abs(g).max() for g in G_list) / max(np.abs(a).max() for a in u)
    sols = [engine.solve([g + s * h * d for g, d in zip(G_list, u)], x) for s in (1, -1)]
    V = [circuit.terminal_voltages(sol.v, sol.src) for sol in sols]
    used = sols[0].converged & sols[1].converged
    w = used.astype(float) / max(1, used.sum())
    return [d / (2 * h) for d in ep_estimate(engine, G_list, V[0], V[1], w, beta, nudging)]


def feedback_series(engine, circuit, G_list, x, ep_grads, beta: float, bounds, eta: float, steps: int
                    ) -> tuple[list[np.ndarray], float]:
    """C-EP's accumulated update predicted from EP's and the echo M (`feedback_response`),
    linear in ΔG (no clipping, β small): step t reads EP/K plus η M applied to step t − 1's
    update, so g_t = Σ_{j<t} (ηM)^j EP/K and Σ_t g_t = Σ_{j<K} (K − j)/K (ηM)^j EP. Returns
    that sum and ρ ≈ ‖M^{K−1} EP‖ / ‖M^{K−2} EP‖, the echo's growth per step per unit η: the
    series diverges as K grows once η ρ ≥ 1, whatever K."""
    term, total, rho = list(ep_grads), [np.array(g, dtype=float) for g in ep_grads], float("nan")
    for j in range(1, steps):
        nxt = [eta * m for m in feedback_response(engine, circuit, G_list, x, term, beta, bounds)]
        rho = _norm(nxt) / (eta * _norm(term))
        term = nxt
        total = [a + (steps - j) / steps * t for a, t in zip(total, term)]
    return total, rho


def _norm(a_list) -> float:
    return float(np.sqrt(sum(np.sum(np.square(a)) for a in a_list)))


def cosine(a_list, b_list) -> float:
    a = np.concatenate([np.ravel(a) for a in a_list])
    b = np.concatenate([np.ravel(b) for b in b_list])
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
