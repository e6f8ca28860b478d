"""Compile a layer graph into one circuit description that both engines consume.

Terminals. Every circuit node is a *terminal*, numbered in three groups:
  [0, n_free)                    free nodes, the unknowns of the nodal equations;
  [n_free, n_free + n_sources)   nodes held by voltage sources (inputs ±x, biases);
  [.., n_terminals)              amplifier outputs, V = V_ref + A·(V_in − V_ref): not
                                 unknowns, affine functions of their input node.
Each terminal t therefore has V_t = coef[t]·v[free[t]] + offset[t] (free/amp) or the
source value (sources).

Energy scale. An amplifier multiplies voltages by A and divides currents by A, so the
co-content of everything behind it counts with weight 1/A² (DESIGN.md §2); `scale` holds
that weight for every element block.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .devices import Device
from .layers import (Amplification, Concatenate, CurrentLayer, Dense, DiodeLayer, Layer, Nodes,
                     NodeSpec, _BiasLayer, _InputLayer)


@dataclass
class DenseBlock:
    layer: Dense
    in_terms: np.ndarray     # terminal index of each input node (columns of G)
    out_terms: np.ndarray    # terminal index of each output node (rows of G)
    scale: float


@dataclass
class NonlinearBlock:
    layer: DiodeLayer
    device: Device
    node_terms: np.ndarray   # terminal of the node side of each device
    ref_term: int            # terminal of the bias source (the other side)
    sign: int                # +1: anode at the node ('up'); −1: cathode at the node ('down')
    scale: np.ndarray        # per device


@dataclass
class CompiledCircuit:
    vref: float
    gmin: float
    free_names: list[str]
    free_scale: np.ndarray
    source_names: list[str]
    source_levels: np.ndarray          # bias levels (relative to V_ref); 0 for inputs
    input_plus: np.ndarray             # source index of V_ref + x_j
    input_minus: np.ndarray            # source index of V_ref − x_j
    amp_names: list[str]
    amp_in: np.ndarray                 # free index of each amplifier's input node
    amp_gain: np.ndarray
    dense: list[DenseBlock]
    nonlinear: list[NonlinearBlock]
    out_plus: np.ndarray               # free index of V⁺ of each differential output
    out_minus: np.ndarray
    out_scale: np.ndarray              # energy scale of each output pair
    term_free: np.ndarray = field(init=False)   # free index behind each terminal (−1: source)
    term_coef: np.ndarray = field(init=False)
    term_offset: np.ndarray = field(init=False)

    def __post_init__(self):
        n_f, n_s, n_a = self.n_free, self.n_sources, len(self.amp_in)
        # energy scale of the blocks each source feeds (NaN if it feeds blocks of several scales)
        self.source_scale = np.full(n_s, np.nan)
        for blk in self.dense:
            cols = blk.in_terms[(blk.in_terms >= n_f) & (blk.in_terms < n_f + n_s)] - n_f
            prev = self.source_scale[cols]
            clash = ~np.isnan(prev) & (prev != blk.scale)
            self.source_scale[cols] = np.where(clash, np.inf, blk.scale)
        self.source_scale[np.isinf(self.source_scale)] = np.nan
        self.term_free = np.concatenate([np.arange(n_f), -np.ones(n_s, int), self.amp_in]).astype(int)
        self.term_coef = np.concatenate([np.ones(n_f), np.zeros(n_s), self.amp_gain])
        self.term_offset = np.concatenate([np.zeros(n_f + n_s), self.vref * (1.0 - self.amp_gain)])

    # sizes -----------------------------------------------------------------------------
    @property
    def n_free(self) -> int:
        return len(self.free_names)

    @property
    def n_sources(self) -> int:
        return len(self.source_names)

    @property
    def n_terminals(self) -> int:
        return self.n_free + self.n_sources + len(self.amp_in)

    @property
    def n_features(self) -> int:
        return len(self.input_plus)

    @property
    def n_outputs(self) -> int:
        return len(self.out_plus)

    def is_source_term(self, t: np.ndarray) -> np.ndarray:
        return (t >= self.n_free) & (t < self.n_free + self.n_sources)

    def terminal_names(self) -> list[str]:
        return self.free_names + self.source_names + self.amp_names

    # sources and voltages ------------------------------------------------------------------
    def source_voltages(self, x: np.ndarray) -> np.ndarray:
        """Source voltages (B, n_sources) for input features x (B, n_features) in volts."""
        x = np.asarray(x, dtype=float)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"inputs of shape {x.shape}, expected (batch, {self.n_features})")
        if not np.all(np.isfinite(x)):
            bad = np.argwhere(~np.isfinite(x))[0]
            raise ValueError(f"non-finite input voltage at sample {bad[0]}, feature {bad[1]}: {x[tuple(bad)]}")
        src = np.broadcast_to(self.vref + self.source_levels, (x.shape[0], self.n_sources)).copy()
        src[:, self.input_plus] = self.vref + x
        src[:, self.input_minus] = self.vref - x
        return src

    def terminal_voltages(self, v: np.ndarray, src: np.ndarray) -> np.ndarray:
        """All terminal voltages (B, n_terminals) from free voltages and source voltages."""
        amp = self.vref + self.amp_gain * (v[:, self.amp_in] - self.vref)
        return np.concatenate([v, src, amp], axis=1)

    def outputs(self, v: np.ndarray) -> np.ndarray:
        """Differential outputs y_k = V(o_k⁺) − V(o_k⁻), shape (B, n_outputs)."""
        return v[:, self.out_plus] - v[:, self.out_minus]

    def nudge_currents(self, dy_current: np.ndarray) -> np.ndarray:
        """Injected currents at free nodes (B, n_free) for per-output currents I_k:
        +I_k into o_k⁺ and −I_k into o_k⁻."""
        inj = np.zeros((dy_current.shape[0], self.n_free))
        inj[:, self.out_plus] += dy_current
        inj[:, self.out_minus] -= dy_current
        return inj


def _topological_layers(outputs: Nodes) -> list[Nodes]:
    """Nodes objects of the graph in dependency order (inputs first)."""
    order, seen = [], set()

    def visit(n: Nodes):
        if id(n) in seen:
            return
        seen.add(id(n))
        for p in n.parents:
            visit(p)
        order.append(n)

    visit(outputs)
    return order


def compile_circuit(inputs: Nodes, outputs: Nodes, vref: float = 0.0, gmin: float = 1e-12) -> CompiledCircuit:
    """Walk the graph from `outputs` back to `inputs` and number nodes and elements."""
    if not isinstance(inputs.layer, _InputLayer):
        raise ValueError("the model's inputs must be the Nodes returned by InputVoltage(...)")
    if not isinstance(outputs.layer, CurrentLayer):
        raise ValueError("the model's outputs must be the Nodes returned by a CurrentLayer")
    if not (np.isfinite(vref)):
        raise ValueError(f"vref={vref!r} must be finite")
    if not (gmin >= 0 and np.isfinite(gmin)):
        raise ValueError(f"gmin={gmin!r} must be a finite number >= 0")
    graph = _topological_layers(outputs)

    free: list[NodeSpec] = []
    sources: list[NodeSpec] = list(inputs.specs)
    amps: list[NodeSpec] = []
    for n in graph:
        for s in n.specs:
            if s.kind == "free" and s.layer is n.layer:
                free.append(s)
            elif s.kind == "amp" and s.layer is n.layer:
                amps.append(s)
            elif s.kind == "input" and s.layer is not inputs.layer:
                raise ValueError(f"input node '{s.name}' belongs to another InputVoltage than the model's inputs")
            elif s.kind == "bias" and s not in sources:
                sources.append(s)
        if isinstance(n.layer, DiodeLayer) and n.layer.bias_spec not in sources:
            sources.append(n.layer.bias_spec)
    index: dict[int, int] = {}
    for k, s in enumerate(free + sources + amps):
        index[id(s)] = k
    n_free = len(free)

    def terms(nodes: Nodes) -> np.ndarray:
        return np.array([index[id(s)] for s in nodes.specs], dtype=int)

    # energy scale of each node's domain: 1 at the front, divided by A² behind each amplifier
    scale: dict[int, float] = {}
    dense, nonlinear, used_layers = [], [], set()
    out_nodes = None
    for n in graph:
        layer = n.layer
        if isinstance(layer, Dense):
            (parent,) = n.parents
            if id(layer) in used_layers:
                raise ValueError(f"Dense layer '{layer.name}' is used twice; each crossbar is one physical block")
            used_layers.add(id(layer))
            scales = {scale[id(s)] for s in parent.specs if not s.is_source}
            if len(scales) > 1:
                raise ValueError(f"Dense layer '{layer.name}' mixes nodes before and after an amplifier")
            sc = scales.pop() if scales else 1.0
            for s in n.specs:
                scale[id(s)] = sc
            dense.append(DenseBlock(layer, terms(parent), terms(n), sc))
        elif isinstance(layer, Amplification):
            (parent,) = n.parents
            for s_out, s_in in zip(n.specs, parent.specs):
                scale[id(s_out)] = scale[id(s_in)] / layer.gain**2
        elif isinstance(layer, DiodeLayer):
            sc = np.array([scale[id(s)] for s in n.specs])
            nonlinear.append(NonlinearBlock(layer, layer.device, terms(n), index[id(layer.bias_spec)],
                                            layer.sign, sc))
        elif isinstance(layer, CurrentLayer):
            out_nodes = n
        elif not isinstance(layer, (Concatenate, _InputLayer, _BiasLayer)):
            raise TypeError(f"unknown layer type {type(layer).__name__} ('{layer.name}')")

    plus = terms(out_nodes)[0::2]
    minus = terms(out_nodes)[1::2]
    src_levels = np.array([s.level if s.kind == "bias" else 0.0 for s in sources])
    feats = inputs.layer.features
    return CompiledCircuit(
        vref=float(vref), gmin=float(gmin),
        free_names=[s.name for s in free],
        free_scale=np.array([scale[id(s)] for s in free]),
        source_names=[s.name for s in sources], source_levels=src_levels,
        input_plus=np.arange(feats), input_minus=np.arange(feats, 2 * feats),
        amp_names=[s.name for s in amps],
        amp_in=np.array([index[id(s.amp_input)] for s in amps], dtype=int),
        amp_gain=np.array([s.layer.gain for s in amps], dtype=float),
        dense=dense, nonlinear=nonlinear,
        out_plus=plus, out_minus=minus,
        out_scale=np.array([scale[id(free[p])] for p in plus]),
    )
