"""Retraining the encoder through the analog block, and how well a retrained
encoder follows the targets input optimisation asked for.

Through the block: the block's loss C(x) on an embedding x = f_θ(image) has, by Equilibrium
Propagation, the input gradient ∂C/∂x from the source currents of a free and a nudged phase
(analog.ep); the encoder's weights then step along (1/B) Σ_b (∂f_θ(image_b)/∂θ)ᵀ ∂C/∂x_b,
the chain rule with the encoder's own backpropagation (digital KerasEncoder.fit_through).
digital/ sees only a callable grad_fn(embeddings, idx) → ∂C/∂x; the block may be the
trained model or a chip (any `analog.block.Block`).

Shift reproduced: with e₀ the embeddings before retraining, t the targets and e₁ the
embeddings after, the fraction of the requested shift reproduced is the projection
Σ⟨e₁ − e₀, t − e₀⟩ / Σ‖t − e₀‖², and the residual ‖e₁ − t‖ / ‖t − e₀‖ (sums over all samples).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.errors import SetupError

import numpy as np

if TYPE_CHECKING:
    from pipeline.config import RootConfig

METHODS = ("targets", "through-analog", "both")


def check_differentiable(encoder, cfg: RootConfig) -> None:
    """ValueError unless the encoder can be trained through the block (has fit_through)."""
    method = cfg.digital.retrain_method
    if method != "targets" and not callable(getattr(encoder, "fit_through", None)):
        raise SetupError(f"digital.retrain_method={method!r} needs a differentiable encoder, but "
                         f"{type(encoder).__name__} (digital.encoder={cfg.digital.encoder!r}) has no "
                         f"fit_through(images, labels, grad_fn, ...); use digital.retrain_method: targets")


def through_cost(cfg: RootConfig):
    """The cost through-analog retraining descends (digital.through_loss): None for the
    block's own training cost, or the cross-entropy of the class scores at
    digital.through_temperature."""
    d = cfg.digital
    if d.through_loss == "block":
        return None
    from analog.losses import CrossEntropy
    return CrossEntropy(temperature=float(d.through_temperature))


def grad_fn_for(block, labels: np.ndarray, method: str = "ep", loss=None):
    """grad_fn(embeddings, idx) → ∂C/∂x (NaN rows where the circuit did not converge), of
    the block's own cost or of `loss` (analog Loss) when given.
    grad_fn.trace gets one (cost sum, correct, converged, samples) row per call: the cost
    being descended and the block's accuracy on the embeddings it was given
    (trace_per_epoch turns it into a learning curve)."""
    labels = np.asarray(labels)

    def grad_fn(embeddings: np.ndarray, idx: np.ndarray) -> np.ndarray:
        res = block.gradients(np.asarray(embeddings, float), labels[idx], method=method, input_grad=True, loss=loss)
        ok = np.asarray(res.used, bool) & np.isfinite(np.asarray(res.loss, float))
        right = np.argmax(np.asarray(res.y)[ok], axis=1) == labels[idx][ok]
        grad_fn.trace.append((float(np.asarray(res.loss, float)[ok].sum()), int(right.sum()), int(ok.sum()), len(idx)))
        g = np.array(res.input_grad, dtype=float)
        if method == "exact":
            return g
        g[~np.asarray(res.used, bool)] = np.nan
        return g
    grad_fn.trace = []
    return grad_fn


def trace_per_epoch(trace: list, n: int, batch_size: int) -> dict:
    """{'cost': [...], 'train_accuracy': [...]} per epoch of a grad_fn trace (ceil(n /
    batch_size) calls per epoch; an epoch cut short is left out). The cost is the mean over
    the samples that converged; a sample that did not counts as wrong in the accuracy (the
    rule of docs/engines.md)."""
    per = -(-int(n) // int(batch_size))
    out: dict = {"cost": [], "train_accuracy": []}
    for lo in range(0, len(trace) - per + 1, per):
        cost, right, used, seen = np.sum(np.asarray(trace[lo:lo + per], float), axis=0)
        out["cost"].append(cost / used if used else float("nan"))
        out["train_accuracy"].append(right / seen)
    return out


def shift_followed(before: np.ndarray, targets: np.ndarray, after: np.ndarray) -> dict:
    """{'reproduced': projection fraction of the requested shift, 'residual': ‖after − t‖/‖t − before‖}."""
    want = np.asarray(targets, float) - before
    got = np.asarray(after, float) - before
    denom = float((want**2).sum())
    if denom == 0:
        return {"reproduced": float("nan"), "residual": float("nan")}
    return {"reproduced": float((got * want).sum() / denom),
            "residual": float(np.sqrt(((after - targets)**2).sum() / denom))}
