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


def cosine(a_list, b_list) -> float:
    a = np.concatenate([np.ravel(a) for a in a_list])
    b = np.concatenate([np.ravel(b) for b in b_list])
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
