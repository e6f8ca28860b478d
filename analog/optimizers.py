"""Optimisers on the conductances.

They work on the normalised device state w = (G − G_min)/(G_max − G_min) ∈ [0, 1], so a
learning rate means the same thing for any device range; after each step G is clipped to
[G_min, G_max] and the number of clipped devices is reported (a learning rate that keeps
driving devices into their limits is too large).
"""
from __future__ import annotations

import inspect
import math

import numpy as np


class Schedule:
    """Learning-rate multiplier per epoch: 'none', 'step' (×gamma every step_size epochs),
    'cosine' (from 1 to 0 over total_epochs)."""

    def __init__(self, kind: str = "none", step_size: int = 10, gamma: float = 0.5, total_epochs: int = 1,
                 start_epoch: int = 0):
        if kind not in ("none", "step", "cosine"):
            raise ValueError(f"schedule={kind!r} must be one of 'none', 'step', 'cosine'")
        self.kind, self.step_size, self.gamma, self.total_epochs = kind, int(step_size), float(gamma), int(total_epochs)
        self.start_epoch = int(start_epoch)

    def restart(self, start_epoch: int, total_epochs: int) -> None:
        """Run the schedule again over `total_epochs` epochs from `start_epoch` (a block that
        continues training in a later co-training round would otherwise sit at the end of
        its cosine, with a learning rate of 0)."""
        self.start_epoch, self.total_epochs = int(start_epoch), int(total_epochs)

    def __call__(self, epoch: int) -> float:
        epoch = max(0, epoch - self.start_epoch)
        if self.kind == "step":
            return self.gamma ** (epoch // max(1, self.step_size))
        if self.kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(epoch, self.total_epochs) / max(1, self.total_epochs)))
        return 1.0

    def get_config(self) -> dict:
        return {"kind": self.kind, "step_size": self.step_size, "gamma": self.gamma,
                "total_epochs": self.total_epochs, "start_epoch": self.start_epoch}

    @classmethod
    def from_config(cls, cfg: dict) -> "Schedule":
        return cls(**cfg)


#: optimiser classes by `name` (what a saved model names); `register_optimizer` adds one
OPTIMIZERS: dict[str, type] = {}


def register_optimizer(cls):
    """Class decorator: make an Optimizer subclass loadable by its `name`."""
    if not (isinstance(cls, type) and issubclass(cls, Optimizer)):
        raise TypeError(f"register_optimizer: {cls!r} is not an analog.optimizers.Optimizer subclass")
    OPTIMIZERS[cls.name] = cls
    return cls


class Optimizer:
    """Base optimiser. Subclasses implement `_direction(k, grad)` on the normalised
    gradient; `get_config`/`from_config` (constructor arguments, JSON) and
    `get_state`/`set_state` (step count, epoch, slot arrays) save and restore it exactly.
    A subclass whose constructor takes non-JSON arguments overrides `get_config`."""

    name = "optimizer"

    def __init__(self, lr: float = 0.01, schedule: Schedule | None = None):
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"{type(self).__name__}: learning rate lr={lr!r} must be a finite number > 0")
        self.lr = float(lr)
        self.schedule = schedule or Schedule()
        self.iterations = 0
        self.epoch = 0
        self.state: dict[str, list[np.ndarray]] = {}

    def _direction(self, k: int, grad: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def apply(self, layers, grads) -> int:
        """One step on every trainable layer (objects with G, g_min, g_max, lr_scale,
        trainable); grads are ∂C/∂G. Returns the number of conductances clipped."""
        self.iterations += 1
        lr = self.lr * self.schedule(self.epoch)
        clipped = 0
        for k, (layer, grad) in enumerate(zip(layers, grads)):
            if not layer.trainable or grad is None:
                continue
            span = layer.g_max - layer.g_min
            step = self._direction(k, grad * span)
            G = layer.G - lr * layer.lr_scale * span * step
            out = (G < layer.g_min) | (G > layer.g_max)
            clipped += int(out.sum())
            layer.G = np.clip(G, layer.g_min, layer.g_max)
        return clipped

    def _slot(self, key: str, k: int, like: np.ndarray) -> np.ndarray:
        slots = self.state.setdefault(key, [])
        while len(slots) <= k:
            slots.append(None)
        if slots[k] is None or slots[k].shape != like.shape:
            slots[k] = np.zeros_like(like)
        return slots[k]

    def get_config(self) -> dict:
        """Constructor arguments (read from the same-named attributes), the schedule, the name."""
        params = [name for name, p in inspect.signature(type(self).__init__).parameters.items()
                  if name not in ("self", "schedule") and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        cfg = {"name": self.name, **{p: getattr(self, p) for p in params}}
        cfg["schedule"] = self.schedule.get_config()
        return cfg

    @classmethod
    def from_config(cls, cfg: dict) -> "Optimizer":
        cfg = dict(cfg)
        cfg.pop("name", None)
        schedule = Schedule.from_config(cfg.pop("schedule")) if cfg.get("schedule") else None
        return cls(schedule=schedule, **cfg)

    def get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-able training state, arrays by key): what `set_state` needs to resume."""
        meta = {"iterations": self.iterations, "epoch": self.epoch,
                "slots": {key: [s is not None for s in slots] for key, slots in self.state.items()}}
        arrays = {f"{key}/{k}": s for key, slots in self.state.items() for k, s in enumerate(slots) if s is not None}
        return meta, arrays

    def set_state(self, meta: dict, arrays: dict) -> None:
        self.iterations, self.epoch = int(meta["iterations"]), int(meta["epoch"])
        self.state = {key: [np.array(arrays[f"{key}/{k}"], dtype=float) if present else None
                            for k, present in enumerate(flags)]
                      for key, flags in meta.get("slots", {}).items()}


@register_optimizer
class SGD(Optimizer):
    name = "sgd"

    def _direction(self, k, grad):
        return grad


@register_optimizer
class Momentum(Optimizer):
    name = "momentum"

    def __init__(self, lr=0.01, momentum=0.9, schedule=None):
        super().__init__(lr, schedule)
        if not 0 <= momentum < 1:
            raise ValueError(f"Momentum: momentum={momentum!r} must be in [0, 1)")
        self.momentum = float(momentum)

    def _direction(self, k, grad):
        m = self._slot("m", k, grad)
        m *= self.momentum
        m += grad
        return m


@register_optimizer
class Adam(Optimizer):
    name = "adam"

    def __init__(self, lr=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-8, schedule=None):
        super().__init__(lr, schedule)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def _direction(self, k, grad):
        m, v = self._slot("m", k, grad), self._slot("v", k, grad)
        m *= self.beta_1
        m += (1 - self.beta_1) * grad
        v *= self.beta_2
        v += (1 - self.beta_2) * grad**2
        t = self.iterations
        mhat = m / (1 - self.beta_1**t)
        vhat = v / (1 - self.beta_2**t)
        return mhat / (np.sqrt(vhat) + self.epsilon)


def get_optimizer(spec, **kwargs) -> Optimizer:
    if isinstance(spec, Optimizer):
        return spec
    if spec not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {spec!r}; choose one of {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[spec](**kwargs)
