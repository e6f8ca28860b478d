"""Training ternary and binary pairs: a real-valued hidden ("latent") weight per pair.

The circuit only ever holds pair states (pairs.py). EP measures ∂C/∂G on that circuit; with
G± = c ± (g_on − g_off)·h/2 the gradient of the hidden weight h of a pair is

    ∂C/∂h = (g_on − g_off)/2 · (∂C/∂G+ − ∂C/∂G−),

which the base rule (SGD, momentum, Adam) turns into a step; h is kept in [−1, 1]. The pair's
state is a function of h alone,

    binary:  +1 if h ≥ 0 else −1;     ternary: sign(h) if |h| > threshold else 0,

and a pair is reprogrammed (both devices written) only when that state changes, i.e. when h
crosses a threshold. Writes carry the device's programming bit errors when `write_errors`
(training on a chip); a pair whose state does not change keeps its devices as they are,
errors included. This is the latent-weight scheme of binarised and ternary networks
(Courbariaux et al. 2016; Hirtzlin et al. 2020; Laborieux et al. 2021), with EP's gradient
in place of backpropagation's.
"""
from __future__ import annotations

import numpy as np

from ..optimizers import Optimizer, Schedule, register_optimizer
from .pairs import PairMap, flip, state_devices
from .spec import HardwareSpec
from .training import BaseRuleState, _hardware


def pair_states(kind: str, h: np.ndarray, threshold: float) -> np.ndarray:
    """The state each hidden weight asks for (the threshold rule above)."""
    h = np.asarray(h, float)
    if kind == "binary":
        return np.where(h >= 0, 1, -1).astype(np.int8)
    return (np.sign(h) * (np.abs(h) > threshold)).astype(np.int8)


@register_optimizer
class PairOptimizer(BaseRuleState, Optimizer):
    """EP on ternary/binary pairs through hidden weights (module docstring).

    spec: a HardwareSpec whose device has pairs 'ternary' or 'binary'; pairs: the PairMaps of
    the block's crossbars (pairs.pair_maps(circuit)); threshold: the ternary threshold on |h|
    (default: the device's pair_threshold). `last_pulses`: devices written in the last
    update; `reprogrammed`: pairs reprogrammed since construction."""

    name = "pairs"
    rule = "threshold"          # how an update reaches the devices (logged beside the pulse rules)

    def __init__(self, spec, pairs, lr: float = 0.01, base: str = "adam", threshold: float | None = None,
                 write_errors: bool = True, seed: int = 0, schedule=None, **base_options):
        super().__init__(lr, schedule)
        self.spec = _hardware(spec)
        self.device = self.spec.device
        if self.device.pairs == "none":
            raise ValueError("PairOptimizer: hardware.device.pairs='none'; needs a pair preset (e.g. rram-2t2r)")
        self._attach_base(base, lr, base_options)
        self.pairs = [p if isinstance(p, PairMap) else PairMap.from_dict(p) for p in pairs]
        self.threshold = float(self.device.pair_threshold if threshold is None else threshold)
        if not 0 <= self.threshold < 1:
            raise ValueError(f"PairOptimizer: threshold={threshold!r} must be in [0, 1)")
        self.base, self.write_errors, self.seed = base, bool(write_errors), int(seed)
        self.base_options = dict(base_options)
        self.rng = np.random.default_rng(self.seed)
        self.last_pulses, self.reprogrammed = 0, 0

    def _on_off(self, layer) -> tuple[float, float]:
        """Conductances of an on and an off device in the layer's units (device / k)."""
        k = self.device.g_max / layer.g_max
        return self.device.g_max / k, self.device.g_min / k

    def hidden(self, k: int, layer) -> np.ndarray:
        """Layer k's hidden weights; the first time, the pairs' weights normalised by the
        largest (so a layer of pair states starts at h ∈ {−1, 0, +1})."""
        slots = self.state.setdefault("hidden", [])
        while len(slots) <= k:
            slots.append(None)
        if slots[k] is None:
            G_plus, G_minus = self.pairs[k].split(layer.G)
            w = G_plus - G_minus
            top = float(np.abs(w).max()) if w.size else 0.0
            slots[k] = np.clip(w / top, -1.0, 1.0) if top > 0 else np.zeros_like(w)
        return slots[k]

    def states(self) -> list[np.ndarray]:
        """The pair states the hidden weights ask for, per layer."""
        return [pair_states(self.device.pairs, h, self.threshold) for h in self.state.get("hidden", [])]

    def start(self, layers) -> None:
        """Hidden weights from the layers' present conductances, and every pair written to its
        state (with bit errors if `write_errors`): a continuous block becomes a pair block
        before its first EP solve."""
        for k, layer in enumerate(layers):
            if layer.trainable:
                on, off = self._on_off(layer)
                states = pair_states(self.device.pairs, self.hidden(k, layer), self.threshold)
                layer.G = self._write(layer, self.pairs[k], states, np.ones(states.shape, bool), on, off)

    def intended(self, layers) -> list[np.ndarray]:
        """Crossbars holding exactly the states the hidden weights ask for (layer units, no
        bit errors): what a fresh chip is programmed with."""
        out = []
        for k, layer in enumerate(layers):
            on, off = self._on_off(layer)
            on_p, on_m = state_devices(pair_states(self.device.pairs, self.hidden(k, layer), self.threshold))
            out.append(self.pairs[k].join(np.where(on_p, on, off), np.where(on_m, on, off), layer.G))
        return out

    def apply(self, layers, grads) -> int:
        self.iterations += 1
        self._base.iterations = self.iterations
        lr = self.lr * self.schedule(self.epoch)
        written = 0
        for k, (layer, grad) in enumerate(zip(layers, grads)):
            if not layer.trainable or grad is None:
                continue
            pm, (on, off) = self.pairs[k], self._on_off(layer)
            h = self.hidden(k, layer)
            before = pair_states(self.device.pairs, h, self.threshold)
            g_plus, g_minus = pm.split(grad)
            g_h = 0.5 * (on - off) * (g_plus - g_minus)
            h[...] = np.clip(h - lr * layer.lr_scale * self._base._direction(k, g_h), -1.0, 1.0)
            after = pair_states(self.device.pairs, h, self.threshold)
            changed = after != before
            if changed.any():
                layer.G = self._write(layer, pm, after, changed, on, off)
                written += 2 * int(changed.sum())
                self.reprogrammed += int(changed.sum())
        self.last_pulses = written
        return 0

    def _write(self, layer, pm: PairMap, states, changed, on: float, off: float) -> np.ndarray:
        """Both devices of every changed pair written to its new state (bit errors if
        `write_errors`); the other devices untouched."""
        on_p, on_m = state_devices(states)
        p = self.device.bit_error if self.write_errors else 0.0
        on_p, on_m = flip(on_p, p, self.rng), flip(on_m, p, self.rng)
        G_plus, G_minus = pm.split(layer.G)
        G_plus = np.where(changed, np.where(on_p, on, off), G_plus)
        G_minus = np.where(changed, np.where(on_m, on, off), G_minus)
        return pm.join(G_plus, G_minus, layer.G)

    def get_config(self) -> dict:
        return {"name": self.name, "spec": self.spec.to_dict(), "pairs": [p.to_dict() for p in self.pairs],
                "lr": self.lr, "base": self.base, "threshold": self.threshold, "write_errors": self.write_errors,
                "seed": self.seed, "schedule": self.schedule.get_config(), **self.base_options}

    @classmethod
    def from_config(cls, cfg: dict) -> "PairOptimizer":
        cfg = dict(cfg)
        cfg.pop("name", None)
        schedule = Schedule.from_config(cfg.pop("schedule")) if cfg.get("schedule") else None
        return cls(HardwareSpec.from_dict(cfg.pop("spec")), cfg.pop("pairs"), schedule=schedule, **cfg)

    def get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        meta, arrays = super().get_state()
        meta["rng"] = self.rng.bit_generator.state
        meta["reprogrammed"] = self.reprogrammed
        return meta, arrays

    def set_state(self, meta: dict, arrays: dict) -> None:
        super().set_state(meta, arrays)
        if "rng" in meta:
            self.rng.bit_generator.state = meta["rng"]
        self.reprogrammed = int(meta.get("reprogrammed", 0))
