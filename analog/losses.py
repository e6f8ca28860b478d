"""Costs on the differential outputs y (volts). Only their gradient ∂C/∂y enters the circuit,
as nudging currents; the cost itself is outside the energy."""
from __future__ import annotations

import numpy as np


def _onehot(labels: np.ndarray, n: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-d integer array, got shape {labels.shape} dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= n):
        raise ValueError(f"labels range {labels.min()}..{labels.max()} does not fit the {n} outputs of the block")
    out = np.zeros((labels.size, n))
    out[np.arange(labels.size), labels] = 1.0
    return out


def _positive(loss: str, key: str, value) -> float:
    if not value > 0:
        raise ValueError(f"{loss}: {key}={value!r} must be > 0")
    return float(value)


#: loss classes by `name` (what a saved model names); `register_loss` adds one
LOSSES: dict[str, type] = {}


def register_loss(cls):
    """Class decorator: make a Loss subclass loadable by its `name` (its constructor takes
    the attributes `get_config` returns as keyword arguments)."""
    if not (isinstance(cls, type) and issubclass(cls, Loss)):
        raise TypeError(f"register_loss: {cls!r} is not an analog.losses.Loss subclass")
    LOSSES[cls.name] = cls
    return cls


class Loss:
    name = "loss"

    def __call__(self, y: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample cost (B,) and its gradient ∂C/∂y (B, K)."""
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"name": self.name, **{k: v for k, v in vars(self).items()}}


@register_loss
class MSE(Loss):
    """½·Σ_k (y_k − t_k)² with targets midpoint ± amplitude (+ for the true class)."""

    name = "mse"

    def __init__(self, midpoint: float = 0.0, amplitude: float = 0.5):
        amplitude = _positive("MSE", "amplitude", amplitude)
        self.midpoint, self.amplitude = float(midpoint), amplitude

    def targets(self, labels, n):
        return self.midpoint + self.amplitude * (2.0 * _onehot(labels, n) - 1.0)

    def __call__(self, y, labels):
        diff = y - self.targets(labels, y.shape[1])
        return 0.5 * (diff**2).sum(1), diff


@register_loss
class CrossEntropy(Loss):
    """Cross-entropy of softmax(y / T) against the labels.

    y and T are in volts. The trained Fashion block's class scores spread by about 0.2 V,
    so T = 1 V makes the softmax nearly uniform; 0.1 V is the best of 0.03, 0.05, 0.1 and
    1 V measured behind the PCA encoder (docs/results-pca-gap.md)."""

    name = "cross_entropy"

    def __init__(self, temperature: float = 0.1):
        self.temperature = _positive("CrossEntropy", "temperature", temperature)

    def __call__(self, y, labels):
        z = y / self.temperature
        z = z - z.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        t = _onehot(labels, y.shape[1])
        return -(t * logp).sum(1), (np.exp(logp) - t) / self.temperature


@register_loss
class Margin(Loss):
    """Σ_{k≠true} max(0, margin − (y_true − y_k)) (volts): zero once the true class leads every
    other by `margin`; until then it pushes the true score up and each score too close to it
    down, indifferent to the output levels (unlike the MSE's ±amplitude targets)."""

    name = "margin"

    def __init__(self, margin: float = 0.1):
        self.margin = _positive("Margin", "margin", margin)

    def __call__(self, y, labels):
        t = _onehot(labels, y.shape[1])
        true = (y * t).sum(1, keepdims=True)
        active = ((self.margin - (true - y)) > 0) & (t == 0)
        hinge = np.where(active, self.margin - (true - y), 0.0)
        grad = active.astype(float) - t * active.sum(1, keepdims=True)
        return hinge.sum(1), grad


def get_loss(spec, **kwargs) -> Loss:
    if isinstance(spec, Loss):
        return spec
    table = {**LOSSES, "crossentropy": CrossEntropy}
    if spec not in table:
        raise ValueError(f"unknown loss {spec!r}; choose one of {sorted(table)}")
    return table[spec](**kwargs)
