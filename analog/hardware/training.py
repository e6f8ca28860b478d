"""Training on real devices.

* `NoiseInjection` (hardware-aware EP): `AnalogModel.compile(..., perturbation=...)` calls
  `perturb` once per mini-batch; the EP solves of that batch see conductances with a fresh
  draw of the device's programming error, the update goes to the clean conductances.
* `PulsedOptimizer` (in-situ EP): every update becomes an integer number of programming
  pulses per device (pulses.py: state-dependent, asymmetric, noisy, saturating steps).
"""
from __future__ import annotations

import numpy as np

from ..optimizers import Optimizer, Schedule, get_optimizer, register_optimizer
from ..persistence import register_perturbation
from . import statistics as st
from .pulses import apply_pulses, pulse_step
from .spec import DeviceSpec, HardwareSpec, validate


def _hardware(spec) -> HardwareSpec:
    if isinstance(spec, dict):
        return HardwareSpec.from_dict(spec)
    if isinstance(spec, HardwareSpec):
        return validate(spec)
    if isinstance(spec, DeviceSpec):
        return validate(HardwareSpec(name="custom", device=spec))
    raise TypeError(f"expected a HardwareSpec or DeviceSpec, got {type(spec).__name__}")


def _device(spec) -> DeviceSpec:
    return _hardware(spec).device


@register_perturbation
class NoiseInjection:
    """Fresh programming error on every mini-batch: G ← G + σ_prog(k·G)/k · ξ (k = device
    g_max / layer g_max, the same mapping as programming), quantised to the device levels
    first when it has any, floored at a small positive conductance. `scale` multiplies σ
    (training a little noisier than the chip is a common hedge)."""

    def __init__(self, spec, scale: float = 1.0, quantise: bool = True):
        self.spec = _hardware(spec)
        self.device = self.spec.device
        if not (isinstance(scale, (int, float)) and np.isfinite(scale) and scale >= 0):
            raise ValueError(f"NoiseInjection: scale={scale!r} must be a finite number >= 0")
        self.scale, self.quantise = float(scale), bool(quantise)

    def perturb(self, G_list, layers, rng) -> list[np.ndarray]:
        rng = rng if rng is not None else np.random.default_rng()
        d, out = self.device, []
        for G, layer in zip(G_list, layers):
            k = d.g_max / layer.g_max
            Gd = k * np.asarray(G, float)
            if self.quantise:
                Gd = st.quantise(d, Gd)
            Gd = Gd + self.scale * st.prog_sigma(d, Gd) * rng.standard_normal(Gd.shape)
            out.append(np.clip(Gd, 1e-3 * d.g_min, d.g_max) / k)
        return out

    def get_config(self) -> dict:
        return {"spec": self.spec.to_dict(), "scale": self.scale, "quantise": self.quantise}

    @classmethod
    def from_config(cls, cfg: dict) -> "NoiseInjection":
        return cls(HardwareSpec.from_dict(cfg["spec"]), scale=cfg.get("scale", 1.0), quantise=cfg.get("quantise", True))


class BaseRuleState:
    """For an optimiser whose steps come from a float base rule (`self._base`: 'sgd',
    'momentum', 'adam'): the base rule's slots (Adam's moments …) are this optimiser's
    `state`, so saving and resuming it carries them. `Optimizer.__init__` sets `state` before
    the base rule exists; until `_attach_base` it is kept aside. Put before `Optimizer` in
    the bases."""

    _base = None

    def _attach_base(self, base: str, lr: float, options: dict) -> None:
        if base not in ("sgd", "momentum", "adam"):
            raise ValueError(f"{type(self).__name__}: base={base!r} must be 'sgd', 'momentum' or 'adam'")
        self._base = get_optimizer(base, lr=lr, **options)
        self._base.state = self.__dict__.pop("_early_state", {})

    @property
    def state(self):
        return self._base.state if self._base is not None else self.__dict__.setdefault("_early_state", {})

    @state.setter
    def state(self, value):
        if self._base is not None:
            self._base.state = value
        else:
            self.__dict__["_early_state"] = value


@register_optimizer
class PulsedOptimizer(BaseRuleState, Optimizer):
    """EP updates as programming pulses.

    The base rule (`base`: 'sgd', 'momentum', 'adam') proposes Δw for each device as the
    float optimisers do; rule='pulses' turns it into n = round(Δw / dw_min) pulses (at most
    `max_pulses` per update), rule='stochastic' rounds Δw / dw_min up or down at random with
    the probabilities that make E[n] = Δw / dw_min (updates smaller than one step still
    count, which devices with few states need), rule='manhattan' gives one pulse of
    sign(Δw) to every device with Δw ≠ 0 (the Manhattan update). The pulses then move the device as pulses.py says.
    The pulsed range is [max(device g_min / k, layer g_min), layer g_max] in the layer's
    units for a continuous device; a device with levels moves on its own level grid (device
    g_min / k + i·(g_max − g_min)/((levels − 1)·k)), on the levels inside the layer's range.
    `apply` returns the number of pulses that hit a bound; `last_pulses` the pulses given."""

    name = "pulsed"

    def __init__(self, spec, lr: float = 0.01, base: str = "sgd", rule: str = "pulses", max_pulses: int | None = None,
                 seed: int = 0, schedule=None, **base_options):
        super().__init__(lr, schedule)
        self.spec = _hardware(spec)
        self.device = self.spec.device
        if rule not in ("pulses", "stochastic", "manhattan"):
            raise ValueError(f"PulsedOptimizer: rule={rule!r} must be 'pulses', 'stochastic' or 'manhattan'")
        self._attach_base(base, lr, base_options)
        step, _ = pulse_step(self.device)
        self.max_pulses = int(max_pulses) if max_pulses is not None else int(np.ceil(1.0 / step))
        if self.max_pulses < 1:
            raise ValueError(f"PulsedOptimizer: max_pulses={max_pulses!r} must be >= 1")
        self.base, self.rule, self.seed = base, rule, int(seed)
        self.base_options = dict(base_options)
        self.rng = np.random.default_rng(self.seed)
        self.last_pulses = 0

    def _range(self, layer) -> tuple[float, float, float]:
        """(lo, hi, floor) in the layer's units: w = (G − lo)/(hi − lo), and w >= floor keeps a
        device inside the layer's range. A device with levels keeps its own range, so the
        w grid is its level grid; a continuous one is mapped onto the part of the layer's
        range the device reaches."""
        k = self.device.g_max / layer.g_max
        if self.device.levels is not None:
            lo, hi = self.device.g_min / k, self.device.g_max / k
            return lo, hi, max(0.0, (layer.g_min - lo) / (hi - lo))
        return max(self.device.g_min / k, layer.g_min), layer.g_max, 0.0

    def apply(self, layers, grads) -> int:
        self.iterations += 1
        self._base.iterations = self.iterations
        lr = self.lr * self.schedule(self.epoch)
        step, _ = pulse_step(self.device)
        hits, pulses = 0, 0
        for k, (layer, grad) in enumerate(zip(layers, grads)):
            if not layer.trainable or grad is None:
                continue
            lo, hi, floor = self._range(layer)
            span = layer.g_max - layer.g_min
            # the float optimisers' step, in units of the pulsed range
            dG = -lr * layer.lr_scale * span * self._base._direction(k, grad * span)
            dw = dG / (hi - lo)
            if self.rule == "manhattan":
                n = np.sign(dw).astype(np.int64)
            else:
                q = dw / step
                q = np.floor(q + self.rng.random(q.shape)) if self.rule == "stochastic" else np.rint(q)
                n = np.clip(q, -self.max_pulses, self.max_pulses).astype(np.int64)
            w = np.clip((layer.G - lo) / (hi - lo), 0.0, 1.0)
            w, h = apply_pulses(self.device, w, n, self.rng, floor)
            G = lo + w * (hi - lo)
            if self.device.levels is not None:     # a level device without pulses keeps its level
                G = np.where(n != 0, np.clip(G, layer.g_min, layer.g_max), layer.G)
            layer.G = G
            hits += h
            pulses += int(np.abs(n).sum())
        self.last_pulses = pulses
        return hits

    def get_config(self) -> dict:
        return {"name": self.name, "spec": self.spec.to_dict(), "lr": self.lr, "base": self.base, "rule": self.rule,
                "max_pulses": self.max_pulses, "seed": self.seed, "schedule": self.schedule.get_config(),
                **self.base_options}

    @classmethod
    def from_config(cls, cfg: dict) -> "PulsedOptimizer":
        cfg = dict(cfg)
        cfg.pop("name", None)
        schedule = Schedule.from_config(cfg.pop("schedule")) if cfg.get("schedule") else None
        return cls(HardwareSpec.from_dict(cfg.pop("spec")), schedule=schedule, **cfg)

    def get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        meta, arrays = super().get_state()
        meta["rng"] = self.rng.bit_generator.state
        return meta, arrays

    def set_state(self, meta: dict, arrays: dict) -> None:
        super().set_state(meta, arrays)
        if "rng" in meta:
            self.rng.bit_generator.state = meta["rng"]
