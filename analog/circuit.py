"""Compile a layer graph into one circuit description that both engines consume.

Terminals. Every circuit node is a *terminal*, numbered in three groups:
  [0, n_free)                    free nodes, the unknowns of the nodal equations;
  [n_free, n_free + n_sources)   nodes held by voltage sources (inputs ±x, biases);
  [.., n_terminals)              amplifier outputs, V = V_ref + A·(V_in − V_ref): not
                                 unknowns, affine functions of their input node.
Each terminal t therefore has V_t = coef[t]·v[free[t]] + offset[t] (free/amp) or the
source value (sources).

Amplifier k: V_out = V_ref + A_k·(V_in − V_ref) + offset_k forward; its input node draws
1/A_k of the current its output delivers.

Energy scale. An amplifier multiplies voltages by A and divides currents by A, so the
co-content of everything behind it counts with weight 1/A². In general every free node n
has a scale s_n and each element is weighted by the scale of the nodes it touches; KCL is
then the stationarity of the weighted energy iff, for every crossbar edge from an
amplifier k's output to a row node i, s_i = s(in_k)/A_k², and s_i = s_j for an edge between
free nodes i, j (`analog.energy_scales` solves these constraints). With equal
gains per amplifier layer this is the familiar s_l = Π 1/A²; with per-amplifier gains it
is solvable when only the first amplifier layer varies (its input nodes, fed by sources
only, take s = A_k²·c); otherwise the circuit is non-reciprocal and has no energy function.
A dense block's `scale` is a float when all its rows share one scale, else an (n_out,)
array of per-row scales.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from .devices import Device
from .energy_scales import energy_scales
from .layers import (Amplification, Concatenate, CurrentLayer, Dense, DiodeLayer, Nodes,
                     NodeSpec, _BiasLayer, _InputLayer)


@dataclass
class DenseBlock:
    layer: Dense
    in_terms: np.ndarray     # terminal index of each input node (columns of G)
    out_terms: np.ndarray    # terminal index of each output node (rows of G)
    scale: float | np.ndarray   # energy scale: one number, or per row (n_out,)
    cols: np.ndarray | None = None   # sparse block: input column of each G entry (n_out, P)

    @property
    def row_scale(self) -> np.ndarray:
        return np.broadcast_to(np.asarray(self.scale, dtype=float), (len(self.out_terms),))

    def scaled(self, G: np.ndarray) -> np.ndarray:
        """G weighted by the energy scale of each row (what enters the energy and KCL)."""
        return G * (self.scale[:, None] if np.ndim(self.scale) else self.scale)


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
    amp_offset: np.ndarray | None = None   # output offset of each amplifier (V), default 0
    amp_layer: list[str] | None = None     # layer name of each amplifier
    term_free: np.ndarray = field(init=False)   # free index behind each terminal (−1: source)
    term_coef: np.ndarray = field(init=False)
    term_offset: np.ndarray = field(init=False)

    def __post_init__(self):
        n_f, n_s, n_a = self.n_free, self.n_sources, len(self.amp_in)
        self.amp_gain = np.asarray(self.amp_gain, dtype=float)
        self.amp_offset = np.zeros(n_a) if self.amp_offset is None else np.asarray(self.amp_offset, dtype=float)
        if self.amp_layer is None:
            self.amp_layer = list(self.amp_names)
        self.term_free = np.concatenate([np.arange(n_f), -np.ones(n_s, int), self.amp_in]).astype(int)
        self.term_coef = np.concatenate([np.ones(n_f), np.zeros(n_s), self.amp_gain])
        self.term_offset = np.concatenate([np.zeros(n_f + n_s), self.vref * (1.0 - self.amp_gain) + self.amp_offset])

    # sizes -----------------------------------------------------------------------------
    @property
    def n_free(self) -> int:
        return len(self.free_names)

    @property
    def n_sources(self) -> int:
        """Nodes held by voltage sources: the inputs ±x and the biases."""
        return len(self.source_names)

    @property
    def n_terminals(self) -> int:
        return self.n_free + self.n_sources + len(self.amp_in)

    @property
    def n_features(self) -> int:
        """Input features; feature j drives the two sources V_ref ± x_j."""
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
        amp = self.vref + self.amp_gain * (v[:, self.amp_in] - self.vref) + self.amp_offset
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


def _apply_scales(c: CompiledCircuit, free_scale: np.ndarray) -> dict:
    """Constructor fields that carry energy scales, from the free-node scales."""
    dense = []
    for blk in c.dense:
        rs = free_scale[blk.out_terms]
        sc = float(rs[0]) if np.all(rs == rs[0]) else rs
        dense.append(dataclasses.replace(blk, scale=sc))
    nonlinear = [dataclasses.replace(blk, scale=free_scale[blk.node_terms]) for blk in c.nonlinear]
    return dict(free_scale=free_scale, dense=dense, nonlinear=nonlinear, out_scale=free_scale[c.out_plus])


def _with(c: CompiledCircuit, **changes) -> CompiledCircuit:
    fields = {f.name: getattr(c, f.name) for f in dataclasses.fields(c) if f.init}
    fields.update(changes)
    return CompiledCircuit(**fields)


def vary_circuit(circuit: CompiledCircuit, *, amp_gain=None, amp_offset=None, device_params=None) -> CompiledCircuit:
    """The same topology with per-element parameters: amp_gain, amp_offset arrays over all
    amplifiers (in `circuit.amp_names` order; None keeps the circuit's), device_params
    {diode layer name: {parameter: number or array over the layer's devices}}. Energy
    scales are recomputed per node (ValueError when the gains leave no energy function)."""
    c = circuit
    n_a = len(c.amp_in)

    def amp_array(value, key, default):
        if value is None:
            return default.copy()
        arr = np.asarray(value, dtype=float)
        if arr.ndim == 0:
            arr = np.full(n_a, float(arr))
        if arr.shape != (n_a,):
            raise ValueError(f"{key} has shape {arr.shape}, expected ({n_a},) (one per amplifier)")
        if not np.all(np.isfinite(arr)) or (key == "amp_gain" and not np.all(arr > 0)):
            raise ValueError(f"{key} must be finite" + (" and > 0" if key == "amp_gain" else ""))
        return arr

    gain = amp_array(amp_gain, "amp_gain", c.amp_gain)
    offset = amp_array(amp_offset, "amp_offset", c.amp_offset)
    params = dict(device_params or {})
    known = [blk.layer.name for blk in c.nonlinear]
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"device_params: unknown diode layer(s) {unknown}; the circuit's are {known}")
    nonlinear = []
    for blk in c.nonlinear:
        device = blk.device
        if blk.layer.name in params:
            p = params[blk.layer.name]
            names = [f.name for f in dataclasses.fields(device)]
            bad = sorted(set(p) - set(names))
            if bad:
                raise ValueError(f"device_params['{blk.layer.name}']: {type(device).__name__} has no "
                                 f"parameter(s) {bad}; it has {names}")
            try:
                device = dataclasses.replace(device, **{k: np.asarray(v, float) if np.ndim(v) else v
                                                        for k, v in p.items()})
                _check_device_size(device, len(blk.node_terms), blk.layer.name)
                device.validate()
            except ValueError as exc:
                raise ValueError(f"device_params['{blk.layer.name}']: {exc}") from None
        nonlinear.append(dataclasses.replace(blk, device=device))
    c2 = _with(c, amp_gain=gain, amp_offset=offset, nonlinear=nonlinear)
    scales = energy_scales(c.n_free, c.n_sources, c2.dense, c2.amp_in, gain, c2.amp_layer)
    return _with(c2, **_apply_scales(c2, scales))


def _check_device_size(device: Device, n: int, layer: str) -> None:
    if device.size is not None and device.size != n:
        raise ValueError(f"diode layer '{layer}' has {n} nodes but its device has per-element "
                         f"parameters of length {device.size}")


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
    free, sources, amps = _number_nodes(graph, inputs)
    index = {id(s): k for k, s in enumerate(free + sources + amps)}
    n_free = len(free)

    def terms(nodes: Nodes) -> np.ndarray:
        return np.array([index[id(s)] for s in nodes.specs], dtype=int)

    dense, nonlinear, out_nodes = _blocks(graph, index, terms)
    plus = terms(out_nodes)[0::2]
    minus = terms(out_nodes)[1::2]
    src_levels = np.array([s.level if s.kind == "bias" else 0.0 for s in sources])
    feats = inputs.layer.features
    c = CompiledCircuit(
        vref=float(vref), gmin=float(gmin),
        free_names=[s.name for s in free], free_scale=np.ones(n_free),
        source_names=[s.name for s in sources], source_levels=src_levels,
        input_plus=np.arange(feats), input_minus=np.arange(feats, 2 * feats),
        amp_names=[s.name for s in amps],
        amp_in=np.array([index[id(s.amp_input)] for s in amps], dtype=int),
        amp_gain=np.array([s.layer.gain for s in amps], dtype=float),
        dense=dense, nonlinear=nonlinear,
        out_plus=plus, out_minus=minus, out_scale=np.ones(len(plus)),
        amp_layer=[s.layer.name for s in amps],
    )
    scales = energy_scales(c.n_free, c.n_sources, c.dense, c.amp_in, c.amp_gain, c.amp_layer)
    return _with(c, **_apply_scales(c, scales))


def _number_nodes(graph: list[Nodes], inputs: Nodes) -> tuple[list[NodeSpec], list[NodeSpec], list[NodeSpec]]:
    """The free nodes, the source-held nodes (inputs first, then biases) and the amplifier
    outputs of the graph, in terminal order."""
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
        for s in getattr(n.layer, "extra_inputs", ()):   # a crossbar's own sources (LC 'same' padding)
            if s.layer is n.layer and s not in sources:
                sources.append(s)
    return free, sources, amps


def _blocks(graph: list[Nodes], index: dict[int, int], terms) -> tuple[list, list, Nodes | None]:
    """The crossbars, the diode layers and the output nodes of the graph."""
    dense, nonlinear, used_layers = [], [], set()
    out_nodes = None
    for n in graph:
        layer = n.layer
        if isinstance(layer, Dense):
            (parent,) = n.parents
            if id(layer) in used_layers:
                raise ValueError(f"Dense layer '{layer.name}' is used twice; each crossbar is one physical block")
            used_layers.add(id(layer))
            in_terms = np.concatenate([terms(parent), [index[id(s)] for s in getattr(layer, "extra_inputs", ())]])
            dense.append(DenseBlock(layer, in_terms.astype(int), terms(n), 1.0, getattr(layer, "cols", None)))
        elif isinstance(layer, DiodeLayer):
            _check_device_size(layer.device, len(n.specs), layer.name)
            nonlinear.append(NonlinearBlock(layer, layer.device, terms(n), index[id(layer.bias_spec)],
                                            layer.sign, np.ones(len(n.specs))))
        elif isinstance(layer, CurrentLayer):
            out_nodes = n
        elif not isinstance(layer, (Concatenate, _InputLayer, _BiasLayer, Amplification)):
            raise TypeError(f"unknown layer type {type(layer).__name__} ('{layer.name}')")
    return dense, nonlinear, out_nodes
