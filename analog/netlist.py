"""SPICE netlists of a CompiledCircuit, for ngspice (both engines simulate exactly this).

One circuit, written two ways:

* `build_circuit` populates a PySpice `Circuit` object (V, R, E, F, I elements through
  PySpice's API; the nonlinear devices, their `.model` cards and `.options` as raw SPICE,
  since PySpice has no element for them). That is what EBANA does per sample and what
  the ngspice engine's "rebuild" mode times.
* `to_netlist` writes the same netlist as plain text, straight from a `NetlistPlan`.
  PySpice's object model costs ~0.3–0.5 s for the Fashion-sized block (33k resistors),
  so the loaded engine writes its netlist this way, once per worker.

Element naming (SPICE is case-insensitive; ngspice reports lowercase vectors):

  V_<node>         each source of circuit.source_names: `V_<node> <node> 0 dc <value>`
  Vvref            the amplifiers' reference node (only when vref != 0; not a circuit source)
  R<b>_<i>_<j>     dense block b: a resistor 1/G[i, j] between output node i and input node j;
                   on a sparse (locally connected) block j is the patch entry, the input node
                   is column cols[i, j]: one resistor per patch edge, none elsewhere
  RGMIN<f>         gmin shunt from free node f to ground (only when circuit.gmin > 0)
  E<k> VS<k> F<k>  amplifier k: forward VCVS of gain A_k, current sense (a source of −offset_k
                   volts, so V_out = V_ref + A_k·(V_in − V_ref) + offset_k), backward CCCS of gain 1/A_k
  IP<k> IM<k>      nudging of output k: +I_k into out_plus[k], −I_k into out_minus[k]
  <X><b>_<i>       device i of nonlinear block b (X is the device's own letter: D, B, M …);
                   per-element devices write each instance with its own `.model` card (one
                   card per distinct instance)

Node names are the circuit's terminal names, lowercased and reduced to [a-z0-9_], made
unique with a numeric suffix where sanitising would merge two of them; ground is `0`.

Tolerances (DEFAULT_OPTIONS): ngspice's default reltol of 1e-3 (vntol 1e-6 V, abstol
1e-12 A) accepts a Newton update of 0.1 % of the voltage as converged, far too loose to
agree with the native engine to 1e-6 V. pivrel=1e-5 (default 1e-3) makes ngspice's per-`op`
matrix reordering 2.6× cheaper on the Fashion-sized block. analog.ngspice.options'
docstring gives the measurements behind both choices.
"""
from __future__ import annotations

import re

import numpy as np

from .spice_number import spice_number as _num

from . import crossbar as xb
from .circuit import CompiledCircuit

#: `.options` of every netlist: values and the measurements behind them in analog/ngspice/options.py.
from .ngspice.options import DEFAULT_OPTIONS  # noqa: E402
REFERENCE_OPTIONS = DEFAULT_OPTIONS   # alias


def sanitize(name: str) -> str:
    """Lowercase name reduced to [a-z0-9_]."""
    return re.sub(r"[^a-z0-9_]", "_", str(name).lower())


def options_line(options: dict | None) -> str:
    """`.options` line: DEFAULT_OPTIONS updated by `options` (None/False drop a key, True
    writes a flag)."""
    opts = dict(DEFAULT_OPTIONS)
    opts.update(options or {})
    parts = []
    for key, val in opts.items():
        if val is None or val is False:
            continue
        parts.append(str(key) if val is True else f"{key}={val!r}" if isinstance(val, float) else f"{key}={val}")
    return ".options " + " ".join(parts) if parts else ""


class NetlistPlan:
    """Names and static structure of a circuit's netlist (picklable: plain lists, no layer
    objects), so worker processes can write netlists and address elements by name."""

    def __init__(self, circuit: CompiledCircuit, options: dict | None = None):
        c = circuit
        self.n_free, self.n_sources, self.n_outputs = c.n_free, c.n_sources, c.n_outputs
        self.options = dict(options or {})
        used = {"0", "gnd"}

        def unique(base: str, fallback: str) -> str:
            base = base or fallback
            name, k = base, 1
            while name in used:
                name = f"{base}_{k}"
                k += 1
            used.add(name)
            return name

        self.nodes = [unique(sanitize(n), f"t{t}") for t, n in enumerate(c.terminal_names())]
        self.free_nodes = self.nodes[: c.n_free]
        self.source_nodes = self.nodes[c.n_free: c.n_free + c.n_sources]
        amp_out = self.nodes[c.n_free + c.n_sources:]
        self.vref = float(c.vref)
        self.vref_node = "0" if c.vref == 0 else unique("vref", "vref")
        self.source_elems = [f"V_{n}" for n in self.source_nodes]
        #: lowercase vector names ngspice gives the source branch currents
        self.source_branches = [f"{e.lower()}#branch" for e in self.source_elems]

        self.dense_shapes, self.dense_out, self.dense_in, self.dense_cols = [], [], [], []
        for blk in c.dense:
            self.dense_shapes.append(xb.g_shape(blk))
            self.dense_out.append([self.nodes[t] for t in blk.out_terms])
            self.dense_in.append([self.nodes[t] for t in blk.in_terms])
            self.dense_cols.append(None if blk.cols is None else blk.cols.tolist())
        # wire resistance per dense block (None: ideal wires), analog/wires.py's layout
        wire_g = getattr(c, "wire_g", None) or [None] * len(c.dense)
        self.wire_r = [None if g is None else 1.0 / float(g) for g in wire_g]
        self.wire_prefix = unique("xw", "xw")

        # amplifiers: (k, input node, output node, internal node, gain); offsets separately
        self.amps = []
        for k, (f, gain) in enumerate(zip(c.amp_in, c.amp_gain)):
            out = amp_out[k]
            self.amps.append((k, self.nodes[int(f)], out, unique(f"{out}_int", f"a{k}_int"), float(gain)))
        self.amp_offsets = [float(o) for o in c.amp_offset]

        self.gmin = float(c.gmin)
        self.out_plus = [self.nodes[int(f)] for f in c.out_plus]
        self.out_minus = [self.nodes[int(f)] for f in c.out_minus]
        self.nudge_plus = [f"IP{k}" for k in range(c.n_outputs)]
        self.nudge_minus = [f"IM{k}" for k in range(c.n_outputs)]

        self.device_lines, self.model_lines = self._device_cards(c)

    def _device_cards(self, c: CompiledCircuit) -> tuple[list[str], list[str]]:
        """The nonlinear devices' raw SPICE lines and their model cards (each once), written
        once: they never change."""
        device_lines: list[str] = []
        model_lines: list[str] = []
        for b, blk in enumerate(c.nonlinear):
            ref = self.nodes[blk.ref_term]
            seen = set(model_lines)
            for i, t in enumerate(blk.node_terms):
                node = self.nodes[int(t)]
                anode, cathode = (node, ref) if blk.sign > 0 else (ref, node)
                device = blk.device.instance(i)
                device_lines += list(device.spice_lines(f"{b}_{i}", anode, cathode))
                for card in device.spice_models():
                    if card not in seen:
                        seen.add(card)
                        model_lines.append(card)
        return device_lines, model_lines

    # names ------------------------------------------------------------------------------
    def resistor_names(self, b: int) -> list[str]:
        rows, cols = self.dense_shapes[b]
        return [f"R{b}_{i}_{j}" for i in range(rows) for j in range(cols)]

    def row_inputs(self, b: int, i: int) -> list[str]:
        """Input node of each resistor of output row i of block b (in G's column order)."""
        ins = self.dense_in[b]
        cols = self.dense_cols[b]
        return ins if cols is None else [ins[j] for j in cols[i]]

    def wired_lines(self, b: int, R: np.ndarray) -> list[str]:
        """Block b's cells and wire segments (analog.wires.netlist_lines)."""
        from .wires import netlist_lines
        return netlist_lines(b, R, self.dense_out[b], self.dense_in[b], self.wire_r[b], f"{self.wire_prefix}{b}_")

    # values -----------------------------------------------------------------------------
    def check_conductances(self, G_list) -> list[np.ndarray]:
        if len(G_list) != len(self.dense_shapes):
            raise ValueError(f"{len(G_list)} conductance arrays for {len(self.dense_shapes)} dense blocks")
        out = []
        for b, (G, shape) in enumerate(zip(G_list, self.dense_shapes)):
            G = np.asarray(G, dtype=float)
            if G.shape != shape:
                raise ValueError(f"conductances of dense block {b} have shape {G.shape}, expected {shape}")
            if not (np.all(np.isfinite(G)) and np.all(G > 0)):
                raise ValueError(f"conductances of dense block {b} must be finite and > 0 (a resistor of 1/G)")
            out.append(G)
        return out

    @staticmethod
    def nudge_values(nudge_row, n_outputs: int) -> np.ndarray:
        if nudge_row is None:
            return np.zeros(n_outputs)
        nudge_row = np.asarray(nudge_row, dtype=float).ravel()
        if nudge_row.shape != (n_outputs,):
            raise ValueError(f"nudging currents of shape {nudge_row.shape}, expected ({n_outputs},)")
        if not np.all(np.isfinite(nudge_row)):
            raise ValueError("non-finite nudging current")
        return nudge_row

    def _src(self, src_row) -> np.ndarray:
        src_row = np.asarray(src_row, dtype=float).ravel()
        if src_row.shape != (self.n_sources,):
            raise ValueError(f"source voltages of shape {src_row.shape}, expected ({self.n_sources},)")
        return src_row

    # plain-text netlist -----------------------------------------------------------------
    def text(self, G_list, src_row, nudge_row=None, title: str = "analog_block", analysis: bool = True) -> str:
        """The netlist as text; `analysis` adds `.op` (for `ngspice -b`)."""
        G_list = self.check_conductances(G_list)
        src_row = self._src(src_row)
        nudge = self.nudge_values(nudge_row, self.n_outputs)
        lines = [f"* {title}"]
        lines += [f"{e} {n} 0 dc {_num(v)}" for e, n, v in zip(self.source_elems, self.source_nodes, src_row)]
        if self.vref_node != "0":
            lines.append(f"Vvref {self.vref_node} 0 dc {_num(self.vref)}")
        for b, G in enumerate(G_list):
            R = 1.0 / G
            if self.wire_r[b] is not None:
                lines += self.wired_lines(b, R)
                continue
            for i, no in enumerate(self.dense_out[b]):
                row = R[i]
                lines += [f"R{b}_{i}_{j} {no} {ni} {_num(row[j])}" for j, ni in enumerate(self.row_inputs(b, i))]
        if self.gmin > 0:
            lines += [f"RGMIN{f} {n} 0 {_num(1.0 / self.gmin)}" for f, n in enumerate(self.free_nodes)]
        for k, nin, out, internal, gain in self.amps:
            lines.append(f"E{k} {internal} {self.vref_node} {nin} {self.vref_node} {_num(gain)}")
            off = self.amp_offsets[k]
            lines.append(f"VS{k} {internal} {out} dc {_num(-off) if off else 0}")
            lines.append(f"F{k} {nin} 0 VS{k} {_num(1.0 / gain)}")
        for k in range(self.n_outputs):
            lines.append(f"IP{k} 0 {self.out_plus[k]} dc {_num(nudge[k])}")
            lines.append(f"IM{k} 0 {self.out_minus[k]} dc {_num(-nudge[k])}")
        lines += self.device_lines
        lines += self.model_lines
        opt = options_line(self.options)
        if opt:
            lines.append(opt)
        if analysis:
            lines.append(".op")
        lines.append(".end")
        return "\n".join(lines) + "\n"


def _source_row(circuit: CompiledCircuit, x_row, src_row) -> np.ndarray:
    if src_row is not None:
        return np.asarray(src_row, dtype=float).ravel()
    if x_row is None:
        raise ValueError("need input voltages x_row (or source voltages src_row)")
    return circuit.source_voltages(np.asarray(x_row, dtype=float).reshape(1, -1))[0]


def node_names(circuit: CompiledCircuit) -> list[str]:
    """SPICE node name of every terminal (index = terminal number)."""
    return NetlistPlan(circuit).nodes


def to_netlist(circuit: CompiledCircuit, G_list, x_row=None, nudge_row=None, *, src_row=None,
               options: dict | None = None, title: str = "analog_block", plan: NetlistPlan | None = None) -> str:
    """Standalone netlist (built with PySpice; `.options`, `.op`, `.end`) for one sample, runnable as is with
    `ngspice -b file.cir`. x_row: (n_features,) volts relative to V_ref (or src_row, the
    source voltages); nudge_row: (n_outputs,) nudging currents, None for the free phase."""
    from .spice_check import check_circuit_devices
    check_circuit_devices(circuit)
    ckt = build_circuit(circuit, G_list, x_row, nudge_row, title, src_row=src_row, options=options, plan=plan)
    return pyspice_netlist(ckt, analysis=True)


def build_circuit(circuit: CompiledCircuit, G_list, x_row=None, nudge_row=None, title: str = "analog_block", *,
                  src_row=None, options: dict | None = None, plan: NetlistPlan | None = None):
    """The same netlist as a PySpice `Circuit` (V, R, E, F, I through PySpice's API; devices,
    models and `.options` as raw SPICE). `pyspice_netlist(result)` is loadable by ngspice."""
    from PySpice.Spice.Netlist import Circuit

    plan = plan or NetlistPlan(circuit, options)
    G_list = plan.check_conductances(G_list)
    src = plan._src(_source_row(circuit, x_row, src_row))
    nudge = plan.nudge_values(nudge_row, plan.n_outputs)
    ckt = Circuit(title)
    gnd = ckt.gnd
    for node, v in zip(plan.source_nodes, src):
        ckt.V(f"_{node}", node, gnd, float(v) + 0.0)
    if plan.vref_node != "0":
        ckt.V("vref", plan.vref_node, gnd, plan.vref)
    wired = []
    for b, G in enumerate(G_list):
        R = 1.0 / G
        if plan.wire_r[b] is not None:     # raw lines: PySpice would not keep our element names
            wired += plan.wired_lines(b, R)
            continue
        for i, no in enumerate(plan.dense_out[b]):
            for j, ni in enumerate(plan.row_inputs(b, i)):
                ckt.R(f"{b}_{i}_{j}", no, ni, float(R[i, j]))
    if plan.gmin > 0:
        for f, n in enumerate(plan.free_nodes):
            ckt.R(f"GMIN{f}", n, gnd, 1.0 / plan.gmin)
    vref = gnd if plan.vref_node == "0" else plan.vref_node
    for k, nin, out, internal, gain in plan.amps:
        ckt.VCVS(str(k), internal, vref, nin, vref, gain)
        ckt.V(f"S{k}", internal, out, -plan.amp_offsets[k] + 0.0)
        ckt.CCCS(str(k), nin, gnd, f"VS{k}", 1.0 / gain)
    for k in range(plan.n_outputs):
        ckt.I(f"P{k}", gnd, plan.out_plus[k], float(nudge[k]) + 0.0)
        ckt.I(f"M{k}", gnd, plan.out_minus[k], float(-nudge[k]) + 0.0)
    raw = wired + plan.device_lines + plan.model_lines
    opt = options_line(plan.options)
    if opt:
        raw = raw + [opt]
    if raw:
        ckt.raw_spice += "\n".join(raw) + "\n"
    return ckt


def pyspice_netlist(ckt, analysis: bool = False) -> str:
    """Loadable text of a PySpice Circuit (PySpice writes neither the analysis nor `.end`)."""
    return str(ckt).rstrip("\n") + ("\n.op" if analysis else "") + "\n.end\n"
