"""Input optimisation (step 4 of the co-training): move each training sample's input
voltages, with the analog block held fixed, until the block classifies it with a margin —
those moved inputs are the target embeddings the encoder is retrained to produce. The block
is any `analog.block.Block`: the trained model or a programmed chip.

For every sample: gradient descent on x using the block's input gradient ∂C/∂x
(Equilibrium Propagation: source currents in the nudged vs the free phase, or the exact
implicit gradient for checks) of a cost C on its class scores (`cost`: the block's own
training cost by default, or e.g. `CrossEntropy` / `Margin` from analog.losses), each step
projected back into the voltage box [v_low, v_high], until y_true − max_{k≠true} y_k ≥ margin
or the step budget is spent. Whatever the cost, the stop is that margin.

Work is batched over samples: a chunk of samples is solved together and each step only
the still-active ones are simulated. The free phase of the gradient doubles as the
margin check, so one step costs one EP gradient (3 operating points with symmetric
nudging) on the active samples.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .block import GRADIENT_METHODS
from .errors import AnalogInputError
from .losses import get_loss

UPDATES = ("normalized", "gradient", "sign")


@dataclass
class InputOptimizationResult:
    targets: np.ndarray            # (N, F) optimised inputs (volts)
    reached: np.ndarray            # (N,) bool: margin reached (before the budget ran out)
    initially_reached: np.ndarray  # (N,) bool: margin already met before any step
    steps: np.ndarray              # (N,) steps taken per sample
    failed: np.ndarray             # (N,) bool: the circuit did not converge for this sample
    seconds: float
    margin_before: np.ndarray      # (N,) y_true − max other at the start
    margin_after: np.ndarray       # (N,) the same at the end (NaN where unknown)
    shifts: np.ndarray             # (N,) L2 norm of the shift per sample (volts)
    targets_delta: np.ndarray      # (N, F) targets − original inputs

    def metrics(self, prefix: str = "") -> dict:
        n = max(1, len(self.targets))
        shift = self.shifts if len(self.shifts) else np.zeros(1)
        moved = ~self.initially_reached
        out = {
            "reached_fraction": float(self.reached.sum() / n),
            "initially_reached_fraction": float(self.initially_reached.sum() / n),
            "newly_reached_fraction": float((self.reached & moved).sum() / max(1, moved.sum())),
            "mean_shift": float(shift.mean()),
            "max_shift": float(shift.max()),
            "mean_abs_shift_per_input": float(np.abs(self.targets_delta).mean()) if self.targets_delta.size else 0.0,
            "mean_steps": float(self.steps.mean()) if len(self.steps) else 0.0,
            "nonconverged": int(self.failed.sum()),
            "seconds": float(self.seconds),
            "samples_per_second": float(len(self.targets) / max(1e-9, self.seconds)),
        }
        return {f"{prefix}{k}": v for k, v in out.items()}


def margins(y: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """y_true − max over the other outputs, per sample (NaN rows stay NaN)."""
    y = np.asarray(y, dtype=float)
    rows = np.arange(len(y))
    true = y[rows, labels]
    other = y.copy()
    other[rows, labels] = -np.inf
    return true - other.max(1)


def _gradient_and_outputs(block, x, labels, method, v0=None, cost=None):
    """(∂C/∂x, free-phase outputs y, converged, free-phase node voltages or None) at x, of the
    block's own cost or of `cost`; EP by default, 'exact' for checks. With `v0` (an
    AnalogModel on the native engine) the free phase starts from v0, the operating point of
    the previous step (a warm start)."""
    if _warm_capable(block, method):
        from .ep import ep_gradients
        G = block.conductances
        if v0 is not None:
            v0 = np.where(np.isfinite(v0), v0, block.circuit.vref)
        free = block.engine.solve(G, x, v0=v0)
        res = ep_gradients(block.engine, block.circuit, G, x, labels, block.loss if cost is None else cost,
                           block.beta, block.nudging, input_grad=True, free=free)
        v = free.v
    else:
        res = block.gradients(x, labels, method=method, input_grad=True, loss=cost)
        v = None
    ok = np.asarray(res.used, bool) & np.all(np.isfinite(res.input_grad), axis=1)
    return res.input_grad, res.y, ok, v


def _warm_capable(block, method) -> bool:
    """Warm starts need the block's own engine and stored conductances: an AnalogModel on
    the native engine (a chip reads fresh conductances every step: it solves from scratch)."""
    from .model import AnalogModel
    return method == "ep" and isinstance(block, AnalogModel) and getattr(block.engine, "name", None) == "native"


def _direction(grad: np.ndarray, update: str) -> np.ndarray:
    if update == "gradient":
        return grad
    if update == "sign":
        return np.sign(grad)
    # normalised: the largest component of every sample's step is lr volts
    scale = np.abs(grad).max(1, keepdims=True)
    return grad / np.where(scale > 0, scale, 1.0)


def _check_parameters(lr, steps, margin, v_low, v_high, step_growth, max_lr, update, method) -> float:
    """AnalogInputError naming the first unusable parameter; returns max_lr (default 4·lr)."""
    if not (lr > 0 and np.isfinite(lr)):
        raise AnalogInputError(f"input optimisation lr={lr!r} must be a finite number > 0")
    if not (isinstance(steps, (int, np.integer)) and steps >= 0):
        raise AnalogInputError(f"input optimisation steps={steps!r} must be an integer >= 0")
    if not margin >= 0:
        raise AnalogInputError(f"input optimisation margin={margin!r} must be >= 0")
    if not v_low < v_high:
        raise AnalogInputError(f"input optimisation needs v_low < v_high, got {v_low}, {v_high}")
    if not (step_growth >= 1.0 and np.isfinite(step_growth)):
        raise AnalogInputError(f"input optimisation step_growth={step_growth!r} must be a finite number >= 1")
    max_lr = 4.0 * lr if max_lr is None else max_lr
    if not (max_lr >= lr and np.isfinite(max_lr)):
        raise AnalogInputError(f"input optimisation max_lr={max_lr!r} must be a finite number >= lr ({lr})")
    if update not in UPDATES:
        raise AnalogInputError(f"input optimisation update={update!r} must be one of {', '.join(UPDATES)}")
    if method not in GRADIENT_METHODS:
        raise AnalogInputError(f"input optimisation method={method!r} must be 'ep' or 'exact'")
    return max_lr


class _Record:
    """Per-sample state of a run: current inputs, step size, outcome flags and margins."""

    def __init__(self, xs: np.ndarray, lr: float):
        n = len(xs)
        self.xs, self.x0, self.rate = xs, xs.copy(), np.full(n, float(lr))
        self.reached, self.initially, self.failed = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)
        self.taken = np.zeros(n, int)
        self.m_before, self.m_after = np.full(n, np.nan), np.full(n, np.nan)


def _descend(block, st: _Record, idx, labels, steps, margin, method, cost, warm_start, rule) -> None:
    """Steps on the samples idx until each reaches the margin, fails or spends the budget;
    each step solves only the samples still active."""
    active, v_prev = idx.copy(), None
    for step in range(steps + 1):
        if not len(active):
            break
        grad, y, ok, v = _gradient_and_outputs(block, st.xs[active], labels[active], method,
                                               v0=v_prev if warm_start else None, cost=cost)
        m = margins(y, labels[active])
        if step == 0:
            st.m_before[active] = m
        st.m_after[active] = m
        st.failed[active[~ok]] = True
        done = ok & (m >= margin)
        st.reached[active[done]] = True
        if step == 0:
            st.initially[active[done]] = True
        keep = ok & ~done
        if step == steps:   # budget spent: this evaluation was the final check
            break
        move = active[keep]
        # the shift penalty λ/2·‖x − x₀‖² pulls each sample back towards its own embedding
        g = grad[keep] + rule["shift_penalty"] * (st.xs[move] - st.x0[move])
        st.xs[move] = np.clip(st.xs[move] - st.rate[move, None] * _direction(g, rule["update"]),
                              rule["v_low"], rule["v_high"])
        st.rate[move] = np.minimum(st.rate[move] * rule["step_growth"], rule["max_lr"])
        v_prev = None if v is None else v[keep]
        st.taken[move] += 1
        active = move


def optimize_inputs(block, x, labels, *, lr: float = 0.05, steps: int = 50, margin: float = 0.1,
                    v_low: float = -1.0, v_high: float = 1.0, update: str = "normalized",
                    batch_size: int = 2000, method: str = "ep", progress: bool = True,
                    desc: str = "optimize inputs", warm_start: bool = True,
                    step_growth: float = 1.0, max_lr: float | None = None, cost=None,
                    shift_penalty: float = 0.0) -> InputOptimizationResult:
    """Gradient descent on the block's input voltages until every sample is classified
    with `margin` or has used `steps` steps; inputs stay in [v_low, v_high].

    update: 'normalized' (default; per sample, the largest component moves lr volts per
    step), 'gradient' (plain x ← x − lr·∂C/∂x) or 'sign' (every component moves ±lr).
    warm_start: each step's free phase starts from the sample's operating point of the step
    before (an AnalogModel on the native engine; other blocks solve from scratch).
    step_growth: a sample still short of the margin takes its next step `step_growth` times
    longer (up to max_lr, default 4·lr): samples far from the margin (a damaged block) get
    there in fewer steps; 1.0 keeps the step fixed.
    cost: the cost descended (an analog Loss or its name); None: the block's training cost.
    shift_penalty: λ ≥ 0 adds λ/2·‖x − x₀‖² (x₀: the sample's starting inputs, volts) to the
    cost, so targets stay near embeddings the encoder already makes; 0: none.
    """
    max_lr = _check_parameters(lr, steps, margin, v_low, v_high, step_growth, max_lr, update, method)
    if not (shift_penalty >= 0 and np.isfinite(shift_penalty)):
        raise AnalogInputError(f"input optimisation shift_penalty={shift_penalty!r} must be a finite number >= 0")
    cost = None if cost is None else get_loss(cost)
    x0 = np.asarray(x, dtype=float)
    labels = np.asarray(labels)
    n_features = block.circuit.n_features
    if x0.ndim != 2 or x0.shape[1] != n_features:
        raise AnalogInputError(f"inputs of shape {x0.shape}, but the analog block takes (N, {n_features})")
    if labels.shape != (len(x0),):
        raise AnalogInputError(f"labels of shape {labels.shape}, expected ({len(x0)},)")
    st = _Record(np.clip(x0, v_low, v_high), lr)
    from .progress import progress as progress_bar
    bar = progress_bar(len(x0), desc, "sample", enabled=progress, mininterval=1.0)
    t0 = time.perf_counter()
    step_rule = dict(update=update, v_low=v_low, v_high=v_high, step_growth=step_growth, max_lr=max_lr,
                     shift_penalty=float(shift_penalty))
    for lo in range(0, len(x0), batch_size):
        idx = np.arange(lo, min(len(x0), lo + batch_size))
        _descend(block, st, idx, labels, steps, margin, method, cost, warm_start, step_rule)
        bar.update(len(idx))
        bar.set_postfix(reached=f"{st.reached[: idx[-1] + 1].mean():.3f}")
    bar.close()
    seconds = time.perf_counter() - t0
    delta = st.xs - x0
    return InputOptimizationResult(targets=st.xs, reached=st.reached, initially_reached=st.initially,
                                   steps=st.taken, failed=st.failed, seconds=seconds, margin_before=st.m_before,
                                   margin_after=st.m_after, shifts=np.linalg.norm(delta, axis=1),
                                   targets_delta=delta)
