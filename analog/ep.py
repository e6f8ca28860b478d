"""Equilibrium Propagation on the circuit, and the exact gradient it approximates.

Nudging: the output current sources inject I_k = −β·∂C/∂y_k (β in amperes per unit of
∂C/∂y) into o_k⁺ and the opposite into o_k⁻, computed from the free-phase outputs and held
during the nudged phase. The circuit then sits at the minimum of F = E + β·s_out·⟨∂C/∂y, y⟩,
so with β_eff = β·s_out (s_out: energy scale of the output layer):
    one-sided   ∂C/∂G ≈ (s_l / 2β_eff) [ ΔV²(s^β) − ΔV²(s⁰) ]
    symmetric   ∂C/∂G ≈ (s_l / 4β_eff) [ ΔV²(s^{+β}) − ΔV²(s^{−β}) ]
    inputs      ∂C/∂V_j ≈ (1 / β_eff) [ Ĩ_j(s^β) − Ĩ_j(s⁰) ],  Ĩ_j = Σ_rows s_row G_row,j (V_j − V_row)
                (Ĩ_j: the current source j delivers, each branch weighted by its energy scale)
Everything is local: voltage drops across each conductance and source currents, measured
in two phases (Kendall et al. 2020; symmetric form: Laborieux et al. 2021).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import crossbar as xb
from .circuit import CompiledCircuit
from .losses import Loss
from .native import single_blas_thread
from .solution import Solution, scaled_source_currents


@dataclass
class GradientResult:
    grads: list[np.ndarray]            # ∂C/∂G per dense block, mean over the used samples
    input_grad: np.ndarray | None      # ∂C/∂x per sample (B, n_features)
    loss: np.ndarray                   # (B,)
    y: np.ndarray                      # free-phase outputs (B, K)
    free: Solution
    used: np.ndarray                   # samples that converged in every phase
    info: dict = field(default_factory=dict)


def squared_drop_sum(block, V: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Σ_b w_b (V_out,i − V_in,j)² for every conductance of a block, of G's shape
    ((n_out, n_in), or (n_out, P) on a sparse block's patch edges)."""
    return xb.squared_drop_sum(block, V, w)


def _input_grad_from_sources(circuit: CompiledCircuit, dC_dsrc: np.ndarray) -> np.ndarray:
    return dC_dsrc[:, circuit.input_plus] - dC_dsrc[:, circuit.input_minus]


def _output_scale(circuit: CompiledCircuit) -> float:
    s = np.asarray(circuit.out_scale, dtype=float)
    if not np.allclose(s, s[0], rtol=1e-9, atol=0):
        raise ValueError("all differential outputs must sit behind the same amplifiers")
    return float(s[0])


@dataclass
class _Phase:
    """What EP reads of a nudged phase: free voltages, source voltages, convergence."""
    v: np.ndarray
    src: np.ndarray
    converged: np.ndarray


def _nudged_start(engine, G_list, src, current, v0) -> np.ndarray:
    """Δv of the nudged phase's warm start v0 + Δv (−Δv for −β): the engine's linear
    response to the nudging currents when it has one (native), else 0."""
    response = getattr(engine, "linear_response", None)
    return np.zeros_like(v0) if response is None else response(G_list, v0, src, current)


def _nudged_pair(engine, G_list, src, current, v0) -> tuple[_Phase, _Phase]:
    """The +β and −β phases as one batch of 2B samples in one engine call (each sample is
    solved on its own; one call instead of two halves the per-call cost at small batches),
    started from the free state plus and minus its linear response to the nudge."""
    B = len(src)
    dv = _nudged_start(engine, G_list, src, current, v0)
    both = engine.solve(G_list, src=np.concatenate([src, src]), nudge=np.concatenate([current, -current]),
                        v0=np.concatenate([v0 + dv, v0 - dv]))
    return (_Phase(both.v[:B], both.src[:B], both.converged[:B]),
            _Phase(both.v[B:], both.src[B:], both.converged[B:]))


def _drop_difference(engine, G_list, b: int, Va: np.ndarray, Vb: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Σ_b w_b [ΔV(a)² − ΔV(b)²] per conductance of block b: the engine's own when its
    crossbar has internal nodes (wire resistance, analog/wired_engine.py), else from the
    terminals."""
    own = getattr(engine, "drop_difference", None)
    got = own(G_list, b, Va, Vb, w) if own is not None else None
    return xb.squared_drop_difference(engine.circuit.dense[b], Va, Vb, w) if got is None else got


def ep_estimate(engine, G_list, Va, Vb, w, beta: float, nudging: str = "symmetric") -> list[np.ndarray]:
    """EP's estimate of ∂C/∂G per crossbar from two phases' terminal voltages Va, Vb (the +β
    and −β phases, or the +β phase and the free one) with sample weights w: the weighted
    difference of squared drops over 4β (symmetric) or 2β, in each crossbar's scale."""
    circuit = engine.circuit
    denom = (4.0 if nudging == "symmetric" else 2.0) * beta * _output_scale(circuit)
    return [blk.scaled(_drop_difference(engine, G_list, b, Va, Vb, w)) / denom for b, blk in enumerate(circuit.dense)]


def _source_currents(engine, circuit, G_list, V, used) -> np.ndarray:
    """Scale-weighted current each source delivers (wired crossbars: through their L_eq)."""
    wired = getattr(engine, "wired_source_currents", None)
    return scaled_source_currents(circuit, G_list, V, used) if wired is None else wired(G_list, V, used)


@single_blas_thread
def ep_gradients(engine, circuit: CompiledCircuit, G_list, x, labels, loss: Loss, beta: float,
                 nudging: str = "symmetric", input_grad: bool = False, free: Solution | None = None
                 ) -> GradientResult:
    """One EP estimate of ∂C/∂G (and ∂C/∂x) on a batch, with either engine."""
    if not (beta > 0 and np.isfinite(beta)):
        raise ValueError(f"beta={beta!r} must be a finite number > 0")
    if nudging not in ("symmetric", "positive"):
        raise ValueError(f"nudging={nudging!r} must be 'symmetric' or 'positive'")
    free = free if free is not None else engine.solve(G_list, x)
    y = circuit.outputs(free.v)
    used = free.converged.copy()
    y_safe = np.where(used[:, None], y, 0.0)
    cost, dC_dy = loss(y_safe, labels)
    current = -beta * dC_dy
    beta_eff = beta * _output_scale(circuit)
    v0 = np.where(used[:, None], free.v, circuit.vref)
    if nudging == "symmetric":
        a, b = _nudged_pair(engine, G_list, free.src, current, v0)
    else:
        plus = engine.solve(G_list, src=free.src, nudge=current,
                            v0=v0 + _nudged_start(engine, G_list, free.src, current, v0))
        a, b = _Phase(plus.v, plus.src, plus.converged), free
    used &= a.converged & b.converged
    w = used.astype(float) / max(1, used.sum())
    keep = used[:, None]   # unused samples weigh 0: zero their voltages so 0·inf (a huge source) is not NaN
    Va = np.where(keep, circuit.terminal_voltages(np.nan_to_num(a.v), a.src), 0.0)
    Vb = np.where(keep, circuit.terminal_voltages(np.nan_to_num(b.v), b.src), 0.0)
    grads = ep_estimate(engine, G_list, Va, Vb, w, beta, nudging)
    gin = None
    if input_grad:
        # ∂F/∂V_source = scale-weighted current each source delivers, from the voltages: right
        # for sources that feed crossbars of different energy scales (skip connections)
        factor = 2.0 if nudging == "symmetric" else 1.0
        dI = (_source_currents(engine, circuit, G_list, Va, used)
              - _source_currents(engine, circuit, G_list, Vb, used))
        gin = _input_grad_from_sources(circuit, dI / (factor * beta_eff))
        gin[~used] = np.nan
    return GradientResult(grads, gin, np.where(free.converged, cost, np.nan), y, free, used,
                          info={"failed": int((~used).sum())})


@single_blas_thread
def exact_gradients(engine, circuit: CompiledCircuit, G_list, x, labels, loss: Loss,
                    free: Solution | None = None) -> GradientResult:
    """∂C/∂G and ∂C/∂x by implicit differentiation at the operating point (native engine):
    solve H λ = ∂C/∂v with H = K + diag(d) the Hessian of F, then ∂C/∂θ = −λᵀ ∂(∇F)/∂θ."""
    free = free if free is not None else engine.solve(G_list, x)
    free.raise_on_failure(engine.name)
    y = circuit.outputs(free.v)
    cost, dC_dy = loss(y, labels)
    rhs = circuit.nudge_currents(dC_dy)            # ∂C/∂v: +g at o⁺, −g at o⁻
    d = engine.hessian_diagonal(free.v, free.src)
    lam = engine.linear_solve(G_list, d, rhs)
    B = len(y)
    # λ on every terminal (the linear part: sources 0, amplifier outputs A·λ_in)
    Lt = np.concatenate([lam, np.zeros_like(free.src), lam[:, circuit.amp_in] * circuit.amp_gain], axis=1)
    V = circuit.terminal_voltages(free.v, free.src)
    grads = []
    dC_dsrc = np.zeros_like(free.src)
    wired = getattr(engine, "drop_products", None)
    for b, (blk, G) in enumerate(zip(circuit.dense, G_list)):
        vo, vi, lo, li = V[:, blk.out_terms], V[:, blk.in_terms], Lt[:, blk.out_terms], Lt[:, blk.in_terms]
        M = wired(G_list, b, V, Lt) if wired is not None else None
        if M is not None:      # wired crossbar: the cell drops of V and λ through its internal nodes
            grads.append(-blk.scaled(M) / B)
            terms = np.concatenate([blk.out_terms, blk.in_terms])
            src = circuit.is_source_term(terms)
            red = engine.reductions(G_list)[b]
            dC_dsrc[:, terms[src] - circuit.n_free] -= float(np.ravel(blk.scale)[0]) * (Lt[:, terms] @ red.l_eq)[:, src]
            continue
        M = ((vo * lo).sum(0)[:, None] + xb.per_column(blk, (vi * li).sum(0))
             - xb.edge_outer(blk, vo, li) - xb.edge_outer(blk, lo, vi))
        grads.append(-blk.scaled(M) / B)
        src_cols = circuit.is_source_term(blk.in_terms)
        dC_dsrc[:, blk.in_terms[src_cols] - circuit.n_free] += xb.times(blk, blk.scaled(G), lo)[:, src_cols]
    gin = _input_grad_from_sources(circuit, dC_dsrc)
    return GradientResult(grads, gin, cost, y, free, np.ones(B, bool))
