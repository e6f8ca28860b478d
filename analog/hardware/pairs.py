"""Ternary and binary weights on differential pairs of two-state devices (RRAM 2T2R).

Each weight is a pair of devices (G+, G−), each in its high-conductance state (LRS, g_max)
or its low one (HRS, g_min):

    +1: (on, off)     −1: (off, on)     0: (off, off)     (binary: only ±1)

Where the pair sits in the block. The block already computes with differences:

* columns — a crossbar whose inputs come in ± copies (V_ref + x_j and V_ref − x_j, and bias
  sources at +l and −l) holds the pair on the two columns of one copy pair. A row node then
  sits at V_ref + Σ_j (G+ − G−)·x_j / Σ(G+ + G−): the weight is G+ − G−, as on a 2T2R cell
  whose two devices see complementary inputs;
* rows — a crossbar whose rows are the differential outputs (o_k+, o_k−; y_k = V(o_k+) −
  V(o_k−)) holds the pair on the two rows of one output, fed by the same input, as the two
  bit lines of a 2T2R cell that a sense amplifier compares.

A crossbar with single-ended inputs (amplifier outputs) and single-ended rows (hidden nodes
with diodes) has no place for a pair; `pair_maps` refuses it, naming the layer.

Bit errors. Programming: each written device ends in the opposite state with probability
`bit_error` (drawn once per write). Reading: each device reads as the opposite state with
probability `read_bit_error`, drawn afresh on every read. docs/devices.md gives the sources.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .spec import DeviceSpec

PAIR_KINDS = ("none", "ternary", "binary")


@dataclass(frozen=True)
class PairMap:
    """Where a crossbar's pairs sit: axis 1 pairs columns plus[p] with minus[p] (the weight
    matrix is (rows, pairs)), axis 0 pairs rows (the weight matrix is (pairs, columns))."""

    layer: str
    axis: int
    plus: np.ndarray
    minus: np.ndarray

    def split(self, G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        G = np.asarray(G)
        if self.axis == 1:
            return G[:, self.plus], G[:, self.minus]
        return G[self.plus, :], G[self.minus, :]

    def join(self, G_plus: np.ndarray, G_minus: np.ndarray, like: np.ndarray) -> np.ndarray:
        """A crossbar of `like`'s shape holding the pairs (every entry belongs to a pair)."""
        out = np.array(like, dtype=float, copy=True)
        if self.axis == 1:
            out[:, self.plus], out[:, self.minus] = G_plus, G_minus
        else:
            out[self.plus, :], out[self.minus, :] = G_plus, G_minus
        return out

    def to_dict(self) -> dict:
        return {"layer": self.layer, "axis": self.axis, "plus": self.plus.tolist(), "minus": self.minus.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "PairMap":
        return cls(str(d["layer"]), int(d["axis"]), np.asarray(d["plus"], int), np.asarray(d["minus"], int))


def _column_pairs(circuit, blk) -> tuple[np.ndarray, np.ndarray] | None:
    """Columns pair up when every input is a source with its mirror in the same crossbar:
    the ± copies of one feature, or two bias sources at +l and −l (l ≠ 0)."""
    n_f = circuit.n_free
    col = {int(t): c for c, t in enumerate(blk.in_terms)}
    plus_of = {int(s) + n_f: int(m) + n_f for s, m in zip(circuit.input_plus, circuit.input_minus)}
    plus, minus, used = [], [], set()
    for c, t in enumerate(blk.in_terms):
        t = int(t)
        if c in used:
            continue
        if not circuit.is_source_term(np.asarray(t)):
            return None
        if t in plus_of:
            partner = col.get(plus_of[t])
        elif t in plus_of.values():
            continue                                     # the − copy, taken with its + copy
        else:
            level = circuit.source_levels[t - n_f]
            if level <= 0:
                continue                                 # taken with its positive mirror
            partner = next((k for k, u in enumerate(blk.in_terms) if k not in used and k != c
                            and circuit.is_source_term(np.asarray(int(u))) and int(u) not in plus_of
                            and int(u) not in plus_of.values()
                            and np.isclose(circuit.source_levels[int(u) - n_f], -level)), None)
        if partner is None:
            return None
        plus.append(c), minus.append(partner)
        used.update((c, partner))
    if len(used) != len(blk.in_terms):
        return None
    return np.asarray(plus, int), np.asarray(minus, int)


def _row_pairs(circuit, blk) -> tuple[np.ndarray, np.ndarray] | None:
    """Rows pair up when they are exactly the differential outputs (o_k+, o_k−)."""
    row = {int(t): r for r, t in enumerate(blk.out_terms)}
    if set(row) != set(map(int, circuit.out_plus)) | set(map(int, circuit.out_minus)):
        return None
    return (np.asarray([row[int(t)] for t in circuit.out_plus], int),
            np.asarray([row[int(t)] for t in circuit.out_minus], int))


def pair_maps(circuit, kind: str = "ternary") -> list[PairMap]:
    """One PairMap per crossbar of the compiled circuit (columns preferred, rows else).
    A crossbar that cannot hold pairs: ValueError naming the key and the layer."""
    maps = []
    for blk in circuit.dense:
        name = blk.layer.name
        found = None if blk.cols is not None else (_column_pairs(circuit, blk), 1)
        if found is None or found[0] is None:
            found = (None if blk.cols is not None else _row_pairs(circuit, blk), 0)
        if found[0] is None:
            raise ValueError(f"hardware.device.pairs={kind!r}: layer '{name}' cannot hold differential pairs "
                             "(its inputs are not ± copies: inputs ±x and bias levels in ±l pairs, "
                             "analog.bias_levels; "
                             "its rows are not differential outputs); "
                             "use at most one hidden dense layer (analog.hidden) or a device without pairs")
        maps.append(PairMap(name, found[1], *found[0]))
    return maps


def states_of(kind: str, w: np.ndarray, threshold: float) -> np.ndarray:
    """Pair states from real weights w (any scale; normalised by the largest |w|): binary:
    sign (0 counts as +1); ternary: sign where |w|/max|w| > threshold, else 0."""
    w = np.asarray(w, float)
    if kind == "binary":
        return np.where(w >= 0, 1, -1).astype(np.int8)
    top = float(np.abs(w).max()) if w.size else 0.0
    if top == 0:
        return np.zeros(w.shape, np.int8)
    return (np.sign(w) * (np.abs(w) / top > threshold)).astype(np.int8)


def state_devices(states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(G+ on?, G− on?) of each pair state."""
    s = np.asarray(states)
    return s > 0, s < 0


def flip(on: np.ndarray, p: float, rng) -> np.ndarray:
    """Each device's state after a bit error of probability p (one draw per device)."""
    on = np.asarray(on, bool)
    if p <= 0:
        return on.copy()
    return on ^ (rng.random(on.shape) < p)


def device_targets(spec: DeviceSpec, pm: PairMap, G_target: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """(device conductances after programming bit errors, intended pair states) for target
    conductances in device units: the pairs' states from the targets' differences, each
    device on (g_max) or off (g_min), then each flipped with probability `bit_error`."""
    G_plus, G_minus = pm.split(G_target)
    states = states_of(spec.pairs, G_plus - G_minus, spec.pair_threshold)
    on_p, on_m = state_devices(states)
    on_p, on_m = flip(on_p, spec.bit_error, rng), flip(on_m, spec.bit_error, rng)
    level = lambda on: np.where(on, spec.g_max, spec.g_min)   # noqa: E731
    return pm.join(level(on_p), level(on_m), G_target), states


def is_on(spec: DeviceSpec, G) -> np.ndarray:
    """A device is on when its conductance lies above the geometric middle of its two states."""
    return np.asarray(G) > np.sqrt(spec.g_min * spec.g_max)


def read_flips(spec: DeviceSpec, G: np.ndarray, rng) -> np.ndarray:
    """One read of devices with read bit errors: a device misread takes its opposite state's
    nominal conductance for this read."""
    if spec.read_bit_error <= 0:
        return G
    wrong = rng.random(np.shape(G)) < spec.read_bit_error
    return np.where(wrong, np.where(is_on(spec, G), spec.g_min, spec.g_max), G)


def realised_states(spec: DeviceSpec, pm: PairMap, G) -> np.ndarray:
    """The pair states a crossbar of device conductances holds: on/off per device, +1 for
    (on, off), −1 for (off, on), 0 for both alike (a binary pair with both alike is 0 too:
    that is what a bit error leaves)."""
    on_p, on_m = (is_on(spec, g) for g in pm.split(G))
    return (on_p.astype(np.int8) - on_m.astype(np.int8))


def check_block(spec, layers, bias_levels, training: str = "ideal") -> None:
    """Refuse, before any work, hidden layers (analog.specs layer specs) whose crossbars cannot
    hold the spec's pairs, and hardware-aware training on pairs (its noise injection perturbs
    single conductances, not pair states)."""
    from ..specs import BlockSpec, DenseLayerSpec
    kind = spec.device.pairs
    if kind == "none":
        return
    for k, layer in enumerate(layers):
        if not isinstance(layer, DenseLayerSpec):
            raise ValueError(f"hardware.device.pairs={kind!r}: analog.layers[{k}] ({layer.kind}) cannot hold "
                             "differential pairs; use dense layers")
    if training == "aware":
        raise ValueError(f"hardware.training='aware': not available with pairs={kind!r} (use 'in-situ': hidden "
                         "weights and pair states, or 'ideal')")
    from ..builders import build_network
    units = tuple(DenseLayerSpec(2, diodes=layer.diodes, amplifier=layer.amplifier) for layer in layers)
    pair_maps(build_network(1, 1, BlockSpec(layers=units, bias_levels=tuple(bias_levels))).circuit, kind)
