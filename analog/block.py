"""What every analog block provides: the `Block` protocol, and the code its implementations share.

Two kinds of block classify input voltages: `analog.model.AnalogModel` (the ideal trained
circuit) and `analog.hardware.Chip` (one programmed realisation of it, read with noise). Input
optimisation, retraining the encoder through the block and the pipeline's accuracy figures use
only what this protocol declares, so either kind (or a new one) can be passed wherever a block
is expected.

Contract:

* `circuit`: the `CompiledCircuit` the block solves (a chip's: its varied diodes and amplifiers).
* `solve(x) -> Solution`: operating points for input voltages x (B, n_features).
* `predict(x) -> (B, K)`: differential outputs (class scores) in volts.
* `scores(x, y) -> dict` and `accuracy(x, y) -> float` under the one non-convergence rule
  (`batch_outputs` and `score_outputs` below): a sample whose free-phase solve did not converge,
  or whose outputs are not finite, counts as wrong in the accuracy, which is taken over all
  samples; the loss and the mean power are means over the converged samples only.
* `gradients(x, labels, method="ep"|"exact", input_grad=False, loss=None) -> GradientResult`:
  ∂C/∂G per dense block and, with input_grad (always with 'exact'), ∂C/∂x per sample, of the
  block's training cost or of `loss` (an `analog.losses.Loss` or its name). EP uses the block's
  nudging strength β and nudging mode (`block_gradients`).
* `close()`: release the block's engines.

A chip's cost, β and nudging are those of the trained model it was programmed from
(`Chip.model`, saved beside the chip); a chip solves at read time t (a keyword of its methods,
default 0: just after programming), with a fresh read-noise draw per solve.
"""
from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import numpy as np

from .circuit import CompiledCircuit
from .ep import GradientResult, ep_gradients, exact_gradients
from .solution import Solution

GRADIENT_METHODS = ("ep", "exact")


@runtime_checkable
class Block(Protocol):
    """A trained analog classifier (see the module docstring)."""

    circuit: CompiledCircuit

    def solve(self, x: np.ndarray) -> Solution:
        ...

    def predict(self, x: np.ndarray) -> np.ndarray:
        ...

    def scores(self, x: np.ndarray, y: np.ndarray) -> dict:
        ...

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        ...

    def gradients(self, x: np.ndarray, labels: np.ndarray, method: str = "ep", input_grad: bool = False,
                  loss=None) -> GradientResult:
        ...

    def close(self) -> None:
        ...


def batch_outputs(solve: Callable[[np.ndarray], Solution], circuit: CompiledCircuit, x: np.ndarray,
                  batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(outputs (B, K), power (B,), ok (B,)) solving x in batches of `batch_size`, one
    `solve` call per batch (on a chip: one conductance read per batch). ok: converged with
    finite outputs; the outputs of the other rows are NaN."""
    out, power, ok = [np.zeros((0, circuit.n_outputs))], [np.zeros(0)], [np.zeros(0, bool)]
    for lo in range(0, len(x), batch_size):
        sol = solve(x[lo: lo + batch_size])
        out.append(circuit.outputs(sol.v))
        power.append(np.asarray(sol.power, float))
        ok.append(np.asarray(sol.converged, bool))
    out, power, ok = np.concatenate(out), np.concatenate(power), np.concatenate(ok)
    ok &= np.all(np.isfinite(out), axis=1)
    out[~ok] = np.nan
    return out, power, ok


def score_outputs(out: np.ndarray, power: np.ndarray, ok: np.ndarray, y: np.ndarray, loss=None) -> dict:
    """accuracy (over all samples; a non-converged one counts as wrong), loss (of `loss`,
    NaN without one) and power_mean (means over the converged samples; NaN if none
    converged), nonconverged, nonconverged_fraction and samples."""
    n = len(y)
    cost = loss(np.where(ok[:, None], out, 0.0), y)[0] if loss is not None else np.full(n, np.nan)
    return {"accuracy": float((out[ok].argmax(1) == y[ok]).sum() / n) if n else float("nan"),
            "loss": float(cost[ok].mean()) if ok.any() else float("nan"),
            "power_mean": float(power[ok].mean()) if ok.any() else float("nan"),
            "nonconverged": int((~ok).sum()), "nonconverged_fraction": float((~ok).sum() / n) if n else 0.0,
            "samples": n}


def block_gradients(engine, native_engine, circuit: CompiledCircuit, G_list, x, labels, cost, *, method: str,
                    beta: float, nudging: str, input_grad: bool) -> GradientResult:
    """The gradients of a block whose conductances are G_list: the EP estimate on `engine`
    (method 'ep'), or the exact implicit gradient on `native_engine` (method 'exact',
    always with ∂C/∂x)."""
    if method not in GRADIENT_METHODS:
        raise ValueError(f"method={method!r} must be 'ep' or 'exact'")
    x, labels = np.asarray(x, float), np.asarray(labels)
    if method == "exact":
        return exact_gradients(native_engine, circuit, G_list, x, labels, cost)
    return ep_gradients(engine, circuit, G_list, x, labels, cost, beta, nudging, input_grad)
