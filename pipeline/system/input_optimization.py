"""The config's `input_optimization` section turned into one call of
`analog.input_optimization.optimize_inputs`: the optimise-inputs stage and retrain-digital
(targets for test images, to measure the shift followed) run it with the same settings."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.config import RootConfig


def input_cost(cfg: RootConfig):
    """The cost descended on the inputs (input_optimization.cost): None for the block's own
    training cost, else the cross-entropy of the class scores or the margin hinge."""
    io = cfg.input_optimization
    cost = io.cost
    if cost == "block":
        return None
    from analog.losses import CrossEntropy, Margin
    if cost == "cross_entropy":
        return CrossEntropy(temperature=float(io.temperature))
    return Margin(margin=float(io.margin))


def optimize_inputs_for(cfg: RootConfig, block, x, labels, v_low: float, v_high: float, progress: bool = False):
    """Input optimisation of (x, labels) on `block` (an analog Block) inside [v_low, v_high]
    with the config's step rule, budget, margin, cost and shift penalty."""
    from analog.input_optimization import optimize_inputs
    io = cfg.input_optimization
    return optimize_inputs(block, x, labels, lr=io.lr, steps=io.steps, margin=io.margin, v_low=v_low,
                           v_high=v_high, update=io.update, batch_size=io.batch_size, method=io.method,
                           step_growth=io.step_growth, cost=input_cost(cfg), shift_penalty=io.shift_penalty,
                           progress=progress)
