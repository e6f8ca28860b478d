"""A population of programmed chips standing in for one block: the set of chips an encoder
is trained through, so that the encoder is fitted to the devices' statistics rather than to
one chip's faults.

`ChipPopulation` implements the `analog.block.Block` protocol. Its gradients are the mean of
its chips' gradients on the same inputs: the encoder's step in through-block retraining is
linear in the per-sample input gradients ((1/B) Σ_b J_bᵀ ∂C/∂x_b), so the mean over chips
of ∂C_k/∂x_b is exactly the gradient of the population's mean cost (1/K) Σ_k C_k on that
mini-batch. A chip drawn per call would give an unbiased estimate of the same at a K-th of the
solves, but with the chip-to-chip difference as noise in every step; on damaged chips that
difference is as large as the signal (the chips' faults are independent), so the population
pays the K solves for a step every chip agrees with.

A sample counts as used only when every chip converged on it (its gradient is then the mean
over all K chips, never over a subset that would change from call to call). Each call reads
every chip afresh (read noise), as a chip's own `gradients` does. Accuracy and scores are the
means over the chips of each chip's own figures; `predict` and the gradient result's outputs
are the mean class scores over the chips.
"""
from __future__ import annotations

import numpy as np

from ..ep import GradientResult

__all__ = ["ChipPopulation"]


class ChipPopulation:
    """Chips programmed from one trained block, used together as one `Block`."""

    def __init__(self, chips, t: float = 0.0):
        chips = list(chips)
        if not chips:
            raise ValueError("a chip population needs at least one chip")
        shapes = {(c.circuit.n_features, c.circuit.n_outputs) for c in chips}
        if len(shapes) != 1:
            raise ValueError(f"the chips of a population must share the block's inputs and outputs, got {shapes}")
        seeds = [c.seed for c in chips]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"the chips of a population must be distinct realisations, got seeds {seeds}")
        self.chips = chips
        self.t = float(t)
        self.circuit = chips[0].circuit    # the shared topology (each chip solves its own varied circuit)

    @property
    def seeds(self) -> list[int]:
        return [c.seed for c in self.chips]

    def __len__(self) -> int:
        return len(self.chips)

    def solve(self, x):
        """The operating points of the first chip (a population has no single operating point;
        the class scores of all chips are in `predict`)."""
        return self.chips[0].solve(x, self.t)

    def predict(self, x) -> np.ndarray:
        """The mean over the chips of their class scores (B, K)."""
        return np.mean([c.predict(x, self.t) for c in self.chips], axis=0)

    def scores(self, x, y) -> dict:
        """Each chip's scores (its own non-convergence rule), averaged over the chips; counts summed."""
        per = [c.scores(x, y, self.t) for c in self.chips]
        out = {k: float(np.mean([s[k] for s in per])) for k in ("accuracy", "loss", "power_mean",
                                                                  "nonconverged_fraction")}
        out.update(nonconverged=int(sum(s["nonconverged"] for s in per)), samples=per[0]["samples"],
                   chips=len(per))
        return out

    def accuracy(self, x, y) -> float:
        """The mean over the chips of each chip's accuracy."""
        return float(np.mean([c.accuracy(x, y, self.t) for c in self.chips]))

    def chip_accuracies(self, x, y) -> list[float]:
        return [c.accuracy(x, y, self.t) for c in self.chips]

    def gradients(self, x, labels, method: str = "ep", input_grad: bool = False, loss=None) -> GradientResult:
        """The mean over the chips of their `gradients` on the same inputs (module docstring)."""
        per = [c.gradients(x, labels, method=method, input_grad=input_grad, loss=loss, t=self.t)
               for c in self.chips]
        used = np.logical_and.reduce([np.asarray(r.used, bool) for r in per])
        return GradientResult(
            grads=[np.mean(g, axis=0) for g in zip(*(r.grads for r in per))],
            input_grad=None if per[0].input_grad is None else np.mean([r.input_grad for r in per], axis=0),
            loss=np.mean([np.asarray(r.loss, float) for r in per], axis=0),
            y=np.mean([np.asarray(r.y, float) for r in per], axis=0),
            free=per[0].free, used=used, info={"chips": len(per), "seeds": self.seeds})

    def close(self) -> None:
        for c in self.chips:
            c.close()

