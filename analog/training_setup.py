"""A model compiled from its typed training description (`analog.specs.TrainingSpec`).

A model that was already trained keeps its optimiser state (Adam's moments, the step
count) when the new optimiser has the same name; the learning rate and schedule come from
the spec, the schedule restarting at the model's current epoch. Training on devices
(noise injection, pulsed updates) passes its own optimiser and perturbation, made by
`analog.hardware.training_rule`."""
from __future__ import annotations

from .optimizers import Optimizer, Schedule, get_optimizer
from .specs import OptimizerSpec, TrainingSpec

__all__ = ["make_optimizer", "compile_model"]


def make_optimizer(o: OptimizerSpec, total_epochs: int, start_epoch: int = 0) -> Optimizer:
    """The optimiser `o` describes, its schedule over `total_epochs` from `start_epoch`."""
    schedule = Schedule(o.schedule, o.step_size, o.step_gamma, total_epochs=total_epochs, start_epoch=start_epoch)
    return get_optimizer(o.name, lr=o.lr, schedule=schedule, **momentum_option(o, o.name))


def momentum_option(o: OptimizerSpec, base: str) -> dict:
    """The momentum keyword an optimiser (or a pulsed rule's base) of this name takes."""
    return {"momentum": o.momentum} if base == "momentum" else {}


def compile_model(model, t: TrainingSpec, *, optimizer: Optimizer | None = None, perturbation=None, phases=None):
    """Compile `model` (an AnalogModel) for `t.epochs` more epochs as `t` says; `optimizer`
    (default: `make_optimizer(t.optimizer, ...)`), `perturbation` and `phases` as
    `AnalogModel.compile` takes them. Returns the model."""
    if not isinstance(t, TrainingSpec):
        raise TypeError(f"compile_model takes an analog.specs.TrainingSpec, got {type(t).__name__}")
    optimizer = optimizer or make_optimizer(t.optimizer, t.epochs, model.epoch)
    previous = model.optimizer if model.compiled else None
    if previous is not None and previous.name == optimizer.name:
        optimizer.state, optimizer.iterations = previous.state, previous.iterations
    if optimizer.name == "pairs" and not optimizer.state.get("hidden"):
        optimizer.start(model.dense_layers)          # the block holds pair states from its first solve
    return model.compile(loss=t.loss, optimizer=optimizer, beta=t.beta, nudging=t.nudging, engine=t.engine,
                         engine_options={"processes": t.workers} if t.engine == "ngspice" else None,
                         perturbation=perturbation, phases=phases, gradient=t.gradient, algorithm=t.algorithm,
                         cep_steps=t.cep_steps, **t.loss_options)
