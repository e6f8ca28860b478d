"""Circuit layers, composed like Keras's functional API.

    x = InputVoltage(4)                                  # 4 features → 8 sources (±x)
    b = BiasVoltage([1.0, -1.0])
    h = Dense(10)(Concatenate()([x, b]))
    h = DiodeLayer("down", bias=-0.5)(DiodeLayer("up", bias=0.5)(h))
    h = Amplification(4.0)(h)
    y = CurrentLayer()(Dense(6)(Concatenate()([h, b])))  # 3 differential outputs
    model = AnalogModel(x, y)

Calling a layer on `Nodes` (the symbolic handle of a set of circuit nodes) records the
wiring; `analog.circuit.compile_circuit` turns the graph into one circuit description.
Voltage levels (bias sources, diode biases) are given relative to the circuit's reference
voltage V_ref, inputs are V_ref ± x.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from .devices import Device, ShockleyDiode

_layer_counter = itertools.count(1)
_names_seen: dict[str, int] = {}


def _auto_name(prefix: str) -> str:
    _names_seen[prefix] = _names_seen.get(prefix, 0) + 1
    return f"{prefix}_{_names_seen[prefix]}"


@dataclass(eq=False)
class NodeSpec:
    """One circuit node. kind: 'input' | 'bias' | 'free' | 'amp'."""

    kind: str
    name: str
    layer: "Layer"
    level: float = 0.0          # bias sources: voltage relative to V_ref
    feature: int = -1           # input sources: feature index
    polarity: int = 0           # input sources: +1 (V_ref + x) or −1 (V_ref − x)
    amp_input: "NodeSpec | None" = None

    @property
    def is_source(self) -> bool:
        return self.kind in ("input", "bias")


class Nodes:
    """Symbolic handle on an ordered set of circuit nodes (the 'tensor' of this API)."""

    def __init__(self, specs, layer: "Layer", parents: tuple["Nodes", ...] = ()):
        self.specs = tuple(specs)
        self.layer = layer
        self.parents = parents

    def __len__(self) -> int:
        return len(self.specs)

    @property
    def shape(self) -> tuple[int]:
        return (len(self.specs),)

    def __repr__(self) -> str:
        return f"<Nodes {len(self)} from {self.layer.name}>"


class Layer:
    """Base layer: `__call__` checks the wiring, `build` creates parameters once."""

    prefix = "layer"

    def __init__(self, name: str | None = None):
        self.name = name or _auto_name(self.prefix)
        self.built = False
        self.input_size: int | None = None
        self._order = next(_layer_counter)

    def _check_input(self, nodes: Nodes) -> None:
        if not isinstance(nodes, Nodes):
            raise TypeError(f"layer '{self.name}' must be called on Nodes, got {type(nodes).__name__}")
        if self.input_size is not None and len(nodes) != self.input_size:
            raise ValueError(f"layer '{self.name}' was built for {self.input_size} input nodes "
                             f"but is wired to {len(nodes)}")
        if len(nodes) == 0:
            raise ValueError(f"layer '{self.name}' is wired to no nodes")

    def build(self, input_size: int) -> None:
        self.input_size = input_size
        self.built = True

    def __call__(self, nodes: Nodes) -> Nodes:
        self._check_input(nodes)
        if not self.built:
            self.build(len(nodes))
        return self.call(nodes)

    def call(self, nodes: Nodes) -> Nodes:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"name": self.name}


class _InputLayer(Layer):
    prefix = "input"

    def __init__(self, features: int, name=None):
        super().__init__(name)
        if not (isinstance(features, (int, np.integer)) and features > 0):
            raise ValueError(f"InputVoltage: features={features!r} must be a positive integer")
        self.features = int(features)

    def get_config(self):
        return {"name": self.name, "features": self.features}


def InputVoltage(features: int, name: str | None = None) -> Nodes:
    """Voltage sources for `features` inputs and their inverted copies: V_ref + x, V_ref − x.

    Conductances are positive, so negative weights come from the inverted copies.
    Node order: all positive copies, then all inverted copies.
    """
    layer = _InputLayer(features, name)
    specs = [NodeSpec("input", f"{layer.name}_p{j}", layer, feature=j, polarity=+1) for j in range(features)]
    specs += [NodeSpec("input", f"{layer.name}_n{j}", layer, feature=j, polarity=-1) for j in range(features)]
    layer.built = True
    return Nodes(specs, layer)


class _BiasLayer(Layer):
    prefix = "bias"

    def __init__(self, levels, name=None):
        super().__init__(name)
        levels = [float(v) for v in np.atleast_1d(levels)]
        if not levels or not all(math.isfinite(v) for v in levels):
            raise ValueError(f"BiasVoltage '{self.name}': levels={levels!r} must be finite numbers")
        self.levels = levels

    def get_config(self):
        return {"name": self.name, "levels": self.levels}


def BiasVoltage(levels, name: str | None = None) -> Nodes:
    """Voltage sources at fixed levels (volts relative to V_ref), e.g. [1.0, -1.0]."""
    layer = _BiasLayer(levels, name)
    layer.built = True
    return Nodes([NodeSpec("bias", f"{layer.name}_{k}", layer, level=v) for k, v in enumerate(layer.levels)], layer)


class Concatenate(Layer):
    prefix = "concatenate"

    def __call__(self, inputs) -> Nodes:  # type: ignore[override]
        inputs = list(inputs)
        if len(inputs) < 1 or not all(isinstance(n, Nodes) for n in inputs):
            raise TypeError(f"Concatenate '{self.name}' takes a list of Nodes")
        specs = [s for n in inputs for s in n.specs]
        if len(set(map(id, specs))) != len(specs):
            raise ValueError(f"Concatenate '{self.name}': the same node appears twice")
        return Nodes(specs, self, tuple(inputs))


def _check_range(owner: str, g_min: float, g_max: float) -> None:
    if not (math.isfinite(g_min) and math.isfinite(g_max)):
        raise ValueError(f"{owner}: conductance range g_min={g_min!r}, g_max={g_max!r} must be finite")
    if g_min <= 0:
        raise ValueError(f"{owner}: g_min={g_min!r} must be > 0 (a conductance of 0 leaves nodes floating)")
    if g_min > g_max:
        raise ValueError(f"{owner}: g_min={g_min!r} must not exceed g_max={g_max!r}")


class Dense(Layer):
    """Conductance crossbar: G[i, j] ≥ 0 from every input node j to every new node i."""

    prefix = "dense"

    def __init__(self, units: int, g_min: float = 1e-7, g_max: float = 2e-5, init: str = "uniform",
                 lr_scale: float = 1.0, trainable: bool = True, seed: int | None = None, name=None):
        super().__init__(name)
        if not (isinstance(units, (int, np.integer)) and units > 0):
            raise ValueError(f"Dense '{self.name}': units={units!r} must be a positive integer")
        _check_range(f"Dense '{self.name}'", g_min, g_max)
        if init not in ("uniform", "glorot"):
            raise ValueError(f"Dense '{self.name}': init={init!r} must be 'uniform' or 'glorot'")
        if not lr_scale > 0:
            raise ValueError(f"Dense '{self.name}': lr_scale={lr_scale!r} must be > 0")
        self.units, self.g_min, self.g_max = int(units), float(g_min), float(g_max)
        self.init, self.lr_scale, self.trainable, self.seed = init, float(lr_scale), bool(trainable), seed
        self.G: np.ndarray | None = None

    @property
    def g_shape(self) -> tuple[int, int]:
        """Shape of G: (units, inputs); a sparse subclass stores (units, patch size)."""
        return (self.units, self.input_size or 0)

    def build(self, input_size: int) -> None:
        super().build(input_size)
        rng = np.random.default_rng(self.seed)
        u = rng.uniform(0.0, 1.0, size=(self.units, input_size))
        span = self.g_max - self.g_min
        if self.init == "glorot":
            span *= min(1.0, math.sqrt(6.0 / (input_size + self.units)))
        self.G = self.g_min + span * u

    def set_conductances(self, G) -> None:
        G = np.asarray(G, dtype=float)
        if G.shape != self.g_shape:
            raise ValueError(f"{type(self).__name__} '{self.name}': conductances of shape {G.shape}, expected "
                             f"{self.g_shape}")
        if not np.all(np.isfinite(G)):
            raise ValueError(f"{type(self).__name__} '{self.name}': conductances are not finite")
        if G.min() < self.g_min or G.max() > self.g_max:
            raise ValueError(f"{type(self).__name__} '{self.name}': conductances span [{G.min():g}, {G.max():g}] S, outside "
                             f"[{self.g_min:g}, {self.g_max:g}]")
        self.G = G.copy()

    def call(self, nodes: Nodes) -> Nodes:
        specs = [NodeSpec("free", f"{self.name}_{i}", self) for i in range(self.units)]
        return Nodes(specs, self, (nodes,))

    def get_config(self):
        return {"name": self.name, "units": self.units, "g_min": self.g_min, "g_max": self.g_max,
                "init": self.init, "lr_scale": self.lr_scale, "trainable": self.trainable}


class DiodeLayer(Layer):
    """A diode at every node, to a bias source at V_ref + bias.

    direction 'up': anode at the node, so it conducts (and clamps) when the node rises above
    the bias; 'down': cathode at the node, clamping it from below.
    """

    prefix = "diode"

    def __init__(self, direction: str = "up", bias: float = 0.0, device: Device | None = None, name=None):
        super().__init__(name)
        if direction not in ("up", "down"):
            raise ValueError(f"DiodeLayer '{self.name}': direction={direction!r} must be 'up' or 'down'")
        if not math.isfinite(bias):
            raise ValueError(f"DiodeLayer '{self.name}': bias={bias!r} must be finite")
        self.direction, self.bias = direction, float(bias)
        self.device = device if device is not None else ShockleyDiode()
        if not isinstance(self.device, Device):
            raise TypeError(f"DiodeLayer '{self.name}': device must be an analog.devices.Device")
        try:
            self.device.validate()
        except ValueError as exc:
            raise ValueError(f"DiodeLayer '{self.name}': {exc}") from None
        self.bias_spec = NodeSpec("bias", f"{self.name}_bias", self, level=self.bias)

    @property
    def sign(self) -> int:
        return 1 if self.direction == "up" else -1

    def call(self, nodes: Nodes) -> Nodes:
        bad = [s.name for s in nodes.specs if s.is_source]
        if bad:
            raise ValueError(f"DiodeLayer '{self.name}' is wired to voltage-source nodes {bad[:3]}; "
                             "diodes go on free (hidden or output) nodes")
        return Nodes(nodes.specs, self, (nodes,))

    def get_config(self):
        return {"name": self.name, "direction": self.direction, "bias": self.bias, "device": repr(self.device)}


class Amplification(Layer):
    """Bidirectional amplifier per node: V_out = V_ref + A·(V_in − V_ref) forward; the input
    node draws 1/A of the current the output delivers (without that backward path the block
    is a one-way signal chain and EP's gradient estimate fails)."""

    prefix = "amplification"

    def __init__(self, gain: float = 4.0, name=None):
        super().__init__(name)
        if not (math.isfinite(gain) and gain > 0):
            raise ValueError(f"Amplification '{self.name}': gain={gain!r} must be a finite number > 0")
        self.gain = float(gain)

    def call(self, nodes: Nodes) -> Nodes:
        bad = [s.name for s in nodes.specs if s.kind != "free"]
        if bad:
            raise ValueError(f"Amplification '{self.name}' must be wired to free nodes (a Dense layer's "
                             f"outputs), got {bad[:3]}")
        specs = [NodeSpec("amp", f"{self.name}_{i}", self, amp_input=s) for i, s in enumerate(nodes.specs)]
        return Nodes(specs, self, (nodes,))

    def get_config(self):
        return {"name": self.name, "gain": self.gain}


class CurrentLayer(Layer):
    """Nudging current sources on differential output pairs (nodes 2k, 2k+1 → y_k = V⁺ − V⁻).
    They deliver 0 A in the free phase; EP injects I = ∓β ∂C/∂y_k in the nudged phases."""

    prefix = "current"

    def call(self, nodes: Nodes) -> Nodes:
        if len(nodes) % 2:
            raise ValueError(f"CurrentLayer '{self.name}' needs an even number of nodes (differential "
                             f"pairs), got {len(nodes)}")
        bad = [s.name for s in nodes.specs if s.kind != "free"]
        if bad:
            raise ValueError(f"CurrentLayer '{self.name}' must be wired to a Dense layer's nodes, got {bad[:3]}")
        return Nodes(nodes.specs, self, (nodes,))

    @property
    def outputs(self) -> int:
        return (self.input_size or 0) // 2
