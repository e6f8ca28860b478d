"""A chip read at one time after programming, as an `analog.block.Block`.

A chip's methods take the read time as a keyword (default 0, just after programming). Code
that works on any Block (input optimisation, retraining the encoder through the block)
calls `gradients(x, labels, ...)` without one; `chip.at(t)` fixes it, so a chip aged by t
seconds can be put wherever a block is expected. Every call is a fresh read (read noise).
"""
from __future__ import annotations


class ChipAt:
    """`chip` read at time `t` (seconds after programming); see the module docstring."""

    def __init__(self, chip, t: float):
        self.chip, self.t = chip, float(t)
        self.circuit = chip.circuit

    def solve(self, x, **options):
        return self.chip.solve(x, self.t, **options)

    def predict(self, x, batch_size: int = 4096):
        return self.chip.predict(x, self.t, batch_size=batch_size)

    def scores(self, x, y, batch_size: int = 4096) -> dict:
        return self.chip.scores(x, y, self.t, batch_size=batch_size)

    def accuracy(self, x, y, batch_size: int = 4096) -> float:
        return self.chip.accuracy(x, y, self.t, batch_size=batch_size)

    def gradients(self, x, labels, method: str = "ep", input_grad: bool = False, loss=None):
        return self.chip.gradients(x, labels, method=method, input_grad=input_grad, loss=loss, t=self.t)

    def close(self) -> None:
        self.chip.close()
