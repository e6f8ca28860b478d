"""Typed descriptions of an analog block and of its training: frozen dataclasses checked
when they are made (`SpecError` naming the field), which `analog.builders.build_network`
and `analog.training_setup.compile_model` take.

    spec = BlockSpec(layers=(DenseLayerSpec(32),), gain=4.0, diode=DiodeSpec(up_bias=-0.3))
    model = build_network(24, 10, spec)
    compile_model(model, TrainingSpec(loss="mse", beta=1e-6, optimizer=OptimizerSpec("adam", lr=0.01)))

Their defaults are the block's one set of defaults (`analog.builders.BLOCK_DEFAULTS` is
derived from them).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Union

from .devices import Device, ShockleyDiode
from .errors import SpecError

__all__ = ["DenseLayerSpec", "LocalLayerSpec", "LayerSpec", "DiodeSpec", "BlockSpec", "OptimizerSpec",
           "TrainingSpec", "SpecError"]


def _positive_int(owner: str, name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise SpecError(f"{owner}.{name}={v!r}: must be a positive integer")
    return v


def _number(owner: str, name: str, v, low: float | None = None, strict: bool = True) -> float:
    """A finite number (not a bool), above `low` (strictly unless strict=False)."""
    ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
    if ok and low is not None:
        ok = v > low if strict else v >= low
    if not ok:
        bound = "" if low is None else f" {'>' if strict else '>='} {low:g}"
        raise SpecError(f"{owner}.{name}={v!r}: must be a finite number{bound}")
    return float(v)


def _choice(owner: str, name: str, v, choices: tuple) -> str:
    if v not in choices:
        raise SpecError(f"{owner}.{name}={v!r}: must be one of {', '.join(map(repr, choices))}")
    return v


def _ints(owner: str, name: str, v, n: int) -> tuple[int, ...]:
    """n positive integers as a tuple (a single integer stands for n equal ones)."""
    v = (v,) * n if isinstance(v, int) and not isinstance(v, bool) else v
    if not (isinstance(v, (tuple, list)) and len(v) == n
            and all(isinstance(a, int) and not isinstance(a, bool) and a > 0 for a in v)):
        raise SpecError(f"{owner}.{name}={v!r}: must be {n} positive integers")
    return tuple(v)


def _common(owner: str, spec) -> None:
    for name in ("diodes", "amplifier"):
        if not isinstance(getattr(spec, name), bool):
            raise SpecError(f"{owner}.{name}={getattr(spec, name)!r}: must be True or False")
    if spec.gain is not None:
        object.__setattr__(spec, "gain", _number(owner, "gain", spec.gain, 0.0))


@dataclass(frozen=True)
class DenseLayerSpec:
    """A hidden crossbar of `units` nodes, then diodes and an amplifier (gain None: the block's)."""
    units: int
    diodes: bool = True
    amplifier: bool = True
    gain: float | None = None

    kind = "dense"

    def __post_init__(self):
        _positive_int("DenseLayerSpec", "units", self.units)
        _common("DenseLayerSpec", self)


@dataclass(frozen=True)
class LocalLayerSpec:
    """A locally connected crossbar (analog.local): `filters` per position of a `kernel`
    window moved by `strides` over an (H, W, C) layout; `input_shape` is needed on a first
    layer (the features' layout, whose ± copies become 2C channels), later layers take the
    previous one's output layout when it is None."""
    filters: int
    kernel: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    input_shape: tuple[int, int, int] | None = None
    padding: str = "valid"
    diodes: bool = True
    amplifier: bool = True
    gain: float | None = None

    kind = "locally_connected2d"

    def __post_init__(self):
        o = "LocalLayerSpec"
        _positive_int(o, "filters", self.filters)
        object.__setattr__(self, "kernel", _ints(o, "kernel", self.kernel, 2))
        object.__setattr__(self, "strides", _ints(o, "strides", self.strides, 2))
        if self.input_shape is not None:
            object.__setattr__(self, "input_shape", _ints(o, "input_shape", self.input_shape, 3))
        _choice(o, "padding", self.padding, ("valid", "same"))
        _common(o, self)


LayerSpec = Union[DenseLayerSpec, LocalLayerSpec]


@dataclass(frozen=True)
class DiodeSpec:
    """The diodes after each crossbar: the device and the biases (V relative to V_ref) of
    the diodes clamping from above (up) and from below (down)."""
    device: Device = field(default_factory=lambda: ShockleyDiode(IS=1e-12, N=1.0, RS=0.0))
    up_bias: float = -0.3
    down_bias: float = 0.3

    def __post_init__(self):
        if not isinstance(self.device, Device):
            raise SpecError(f"DiodeSpec.device={self.device!r}: must be an analog.devices.Device")
        for name in ("up_bias", "down_bias"):
            object.__setattr__(self, name, _number("DiodeSpec", name, getattr(self, name)))


@dataclass(frozen=True)
class BlockSpec:
    """The EBANA-style block: inputs V_ref ± x (|x| <= input_amplitude) → per hidden layer
    [crossbar → diodes up/down → amplifier] → output crossbar → 2·classes nodes. Conductances
    in [g_min, g_max] S drawn by `init` from `seed`; `bias_levels` sources (V relative to
    V_ref) on every crossbar; `gmin` S from every free node to ground."""
    layers: tuple[LayerSpec, ...] = (DenseLayerSpec(100),)
    vref: float = 0.0
    input_amplitude: float = 1.0
    g_min: float = 1e-7
    g_max: float = 2e-5
    init: str = "uniform"
    gain: float = 4.0
    bias_levels: tuple[float, ...] = (1.0, -1.0)
    gmin: float = 1e-12
    diode: DiodeSpec = field(default_factory=DiodeSpec)
    seed: int = 0
    name: str = "analog_block"

    def __post_init__(self):
        o, set_ = "BlockSpec", lambda k, v: object.__setattr__(self, k, v)
        if not isinstance(self.layers, (tuple, list)):
            raise SpecError(f"{o}.layers={self.layers!r}: must be a sequence of DenseLayerSpec/LocalLayerSpec")
        for k, layer in enumerate(self.layers):
            if not isinstance(layer, (DenseLayerSpec, LocalLayerSpec)):
                raise SpecError(f"{o}.layers[{k}]={layer!r}: must be a DenseLayerSpec or LocalLayerSpec")
        set_("layers", tuple(self.layers))
        set_("vref", _number(o, "vref", self.vref))
        set_("input_amplitude", _number(o, "input_amplitude", self.input_amplitude, 0.0))
        set_("g_min", _number(o, "g_min", self.g_min, 0.0))
        set_("g_max", _number(o, "g_max", self.g_max, 0.0))
        if self.g_min > self.g_max:
            raise SpecError(f"{o}.g_min={self.g_min!r}: must not exceed g_max={self.g_max!r}")
        _choice(o, "init", self.init, ("uniform", "glorot"))
        set_("gain", _number(o, "gain", self.gain, 0.0))
        if isinstance(self.bias_levels, (str, bytes)) or not hasattr(self.bias_levels, "__iter__"):
            raise SpecError(f"{o}.bias_levels={self.bias_levels!r}: must be a sequence of finite numbers")
        set_("bias_levels", tuple(_number(o, "bias_levels", v) for v in self.bias_levels))
        if not self.bias_levels:
            raise SpecError(f"{o}.bias_levels=(): needs at least one bias source level")
        set_("gmin", _number(o, "gmin", self.gmin, 0.0, strict=False))
        if not isinstance(self.diode, DiodeSpec):
            raise SpecError(f"{o}.diode={self.diode!r}: must be a DiodeSpec")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise SpecError(f"{o}.seed={self.seed!r}: must be an integer >= 0")
        if not isinstance(self.name, str) or not self.name:
            raise SpecError(f"{o}.name={self.name!r}: must be a non-empty string")

    @property
    def widths(self) -> list[int | None]:
        """Units of each dense layer (None for a locally connected one: its width needs the layout)."""
        return [layer.units if isinstance(layer, DenseLayerSpec) else None for layer in self.layers]

    @classmethod
    def dense(cls, hidden=(100,), **fields_) -> "BlockSpec":
        """The short form: dense hidden layers of these sizes, other fields as given."""
        return cls(layers=tuple(DenseLayerSpec(int(u)) for u in hidden), **fields_)


@dataclass(frozen=True)
class OptimizerSpec:
    """The optimiser of the conductances and its learning-rate schedule."""
    name: str = "adam"
    lr: float = 0.01
    momentum: float = 0.9
    schedule: str = "none"
    step_size: int = 10
    step_gamma: float = 0.5

    def __post_init__(self):
        o = "OptimizerSpec"
        _choice(o, "name", self.name, ("adam", "sgd", "momentum"))
        object.__setattr__(self, "lr", _number(o, "lr", self.lr, 0.0))
        object.__setattr__(self, "momentum", _number(o, "momentum", self.momentum, 0.0, strict=False))
        if self.momentum >= 1:
            raise SpecError(f"{o}.momentum={self.momentum!r}: must be below 1")
        _choice(o, "schedule", self.schedule, ("none", "step", "cosine"))
        _positive_int(o, "step_size", self.step_size)
        object.__setattr__(self, "step_gamma", _number(o, "step_gamma", self.step_gamma, 0.0))
        if self.step_gamma > 1:
            raise SpecError(f"{o}.step_gamma={self.step_gamma!r}: must be at most 1")


@dataclass(frozen=True)
class TrainingSpec:
    """EP training of a block: the cost (mse: targets mse_midpoint ± mse_amplitude V;
    cross_entropy: softmax(y / temperature)), the nudging strength beta (A per unit of
    ∂C/∂y) and nudging, ep or c-ep (continual EP in cep_steps steps, sgd only), the gradient
    followed (ep, or exact: native engine only), the engine (ngspice with `workers`
    processes), the optimiser, epochs and mini-batch size."""
    loss: str = "mse"
    temperature: float = 0.1
    mse_midpoint: float = 0.0
    mse_amplitude: float = 0.5
    beta: float = 1e-6
    nudging: str = "symmetric"
    algorithm: str = "ep"
    cep_steps: int = 10
    gradient: str = "ep"
    engine: str = "native"
    workers: int = 2
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    epochs: int = 10
    batch_size: int = 32

    def __post_init__(self):
        o = "TrainingSpec"
        _choice(o, "loss", self.loss, ("mse", "cross_entropy"))
        for name, low in (("temperature", 0.0), ("mse_midpoint", None), ("mse_amplitude", 0.0), ("beta", 0.0)):
            object.__setattr__(self, name, _number(o, name, getattr(self, name), low))
        _choice(o, "nudging", self.nudging, ("symmetric", "positive"))
        _choice(o, "algorithm", self.algorithm, ("ep", "c-ep"))
        _choice(o, "gradient", self.gradient, ("ep", "exact"))
        _choice(o, "engine", self.engine, ("native", "ngspice"))
        for name in ("cep_steps", "workers", "epochs", "batch_size"):
            _positive_int(o, name, getattr(self, name))
        if not isinstance(self.optimizer, OptimizerSpec):
            raise SpecError(f"{o}.optimizer={self.optimizer!r}: must be an OptimizerSpec")
        if self.gradient == "exact" and self.engine != "native":
            raise SpecError(f"{o}.gradient='exact' is computed on the native engine; engine={self.engine!r} "
                            "trains by EP only")
        if self.algorithm == "c-ep" and (self.gradient == "exact" or self.optimizer.name != "sgd"):
            raise SpecError(f"{o}.algorithm='c-ep' applies its local updates as plain SGD steps: needs "
                            f"optimizer.name='sgd' (got {self.optimizer.name!r}) and gradient='ep'")

    @property
    def loss_options(self) -> dict:
        """The keyword options of the cost (analog.losses)."""
        if self.loss == "cross_entropy":
            return {"temperature": self.temperature}
        return {"midpoint": self.mse_midpoint, "amplitude": self.mse_amplitude}
