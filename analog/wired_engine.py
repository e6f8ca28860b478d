"""The native engine on a circuit whose crossbars have wire resistance (analog/wires.py).

Each wired dense block enters the nodal equations through its Kron-reduced terminal
matrix L_eq (outputs and inputs, all coupled), weighted by the block's energy scale;
everything else (devices, amplifiers, the Newton iteration) is the native engine's. The
reduction is recomputed when the conductances change, once per conductance update.

The Newton iteration eliminates the same independent set of nodes as on the unwired
circuit (each layer's nodes), whose Schur solver reads only the diagonal of the eliminated
block: the wires add weak couplings between the nodes of one layer. That elimination is
the preconditioner of conjugate gradients on the whole K (analog/wired_schur.py): a Newton
direction is solved to DIRECTION_RTOL, so Newton takes the unwired circuit's iterations (3
on the Fashion-sized chip, against 10 with the bare elimination); linear solves whose
result is read (EP's nudge response, the exact gradient) to rounding level. The start's
block relaxation holds the same weak couplings at the current state (analog/relax.py).
The line search and the KCL test use the exact K, so the operating point is exact either way.

A wired crossbar couples its output nodes with each other, so all of them must share one
energy scale: wires behind amplifiers of different gains would make the circuit
non-reciprocal (no energy function, so neither the convex solve nor EP would hold), and
such a circuit is refused.
"""
from __future__ import annotations

import numpy as np

from .native import NativeEngine
from .solution import dissipated_power, scaled_source_currents
from .wired_schur import DIRECTION_RTOL, EXACT_RTOL, RefinedSchur  # noqa: F401 (DIRECTION_RTOL: re-exported)
from .wires import WiredCrossbar


def check_wired(circuit, wire_g) -> None:
    """ValueError when a wired block is sparse or its rows do not share one energy scale."""
    for blk, g in zip(circuit.dense, wire_g):
        if g is None:
            continue
        if blk.cols is not None:
            raise ValueError(f"hardware.wires: layer '{blk.layer.name}' is locally connected; wire resistance "
                             "is modelled on dense crossbars only")
        if np.ndim(blk.scale) and not np.allclose(blk.scale, blk.scale[0], rtol=1e-12, atol=0):
            raise ValueError(f"hardware.wires: layer '{blk.layer.name}' feeds amplifiers of different gains "
                             "(hardware.variation.gain_sigma > 0); its wires would couple rows of different "
                             "energy scales (a non-reciprocal circuit): set gain_sigma to 0 with wires")


class WiredNativeEngine(NativeEngine):
    """NativeEngine with wire segments of conductance `circuit.wire_g[b]` (S, None: ideal)."""

    def __init__(self, circuit, **options):
        self._wire_g = list(circuit.wire_g)
        check_wired(circuit, self._wire_g)
        self._red_G: list | None = None
        self._red: list = []
        super().__init__(circuit, **options)

    # ---- the reduction, once per conductance update -------------------------------------
    def reductions(self, G_list) -> list:
        """Per dense block, its WiredCrossbar (None where the wires are ideal)."""
        if self._red_G is None or not all(a is b or np.array_equal(a, b) for a, b in zip(self._red_G, G_list)):
            old = self._red or [None] * len(G_list)          # its arrays go to the new reduction
            self._red = [None if g is None else WiredCrossbar(G, g, recycle=o)
                         for G, g, o in zip(G_list, self._wire_g, old)]
            self._red_G = [np.array(G, float, copy=True) for G in G_list]
        return self._red

    def _unwired(self, G_list):
        """G with the wired blocks zeroed: what the base engine's crossbar formulas see."""
        return [np.zeros_like(G) if g is not None else G for G, g in zip(G_list, self._wire_g)]

    def _wired_blocks(self, G_list):
        for blk, red in zip(self.circuit.dense, self.reductions(G_list)):
            if red is not None:
                terms = np.concatenate([blk.out_terms, blk.in_terms])
                yield blk, red, terms, float(np.asarray(blk.scale).ravel()[0])

    # ---- linear part ----------------------------------------------------------------------
    def _linear(self, G_list):
        lin = super()._linear(G_list)
        if not lin["schur"].exact:
            lin["schur"] = RefinedSchur(lin["schur"], lin["K"])
        return lin

    def _build_K(self, G_list, structural=False) -> np.ndarray:
        # the structure (which nodes the Schur solver eliminates) is the unwired crossbar's: the
        # wires' weak couplings between nodes of one layer are left to conjugate gradients
        # preconditioned with that elimination (analog/wired_schur.py)
        K = super()._build_K(G_list if structural else self._unwired(G_list), structural)
        if not structural:
            for blk, red, terms, s in self._wired_blocks(G_list):
                f, a = self._tf[terms], self._tc[terms]
                m = f >= 0
                W = s * red.block(m, m) * a[m][:, None] * a[m][None, :]
                np.add.at(K, (f[m][:, None], f[m][None, :]), W)
        return K

    def linear_solve(self, G_list, d: np.ndarray, rhs: np.ndarray, precond=None) -> np.ndarray:
        """(K + diag(d)) x = rhs per sample, to rounding level (see RefinedSchur)."""
        solver = self._linear(G_list)["schur"]
        return solver.solve(d, rhs, rtol=EXACT_RTOL) if isinstance(solver, RefinedSchur) else \
            super().linear_solve(G_list, d, rhs, precond)

    def _source_map(self, G_list) -> np.ndarray:
        C = super()._source_map(self._unwired(G_list))
        c = self.circuit
        for blk, red, terms, s in self._wired_blocks(G_list):
            f, a = self._tf[terms], self._tc[terms]
            src, free = c.is_source_term(terms), f >= 0
            np.add.at(C, (terms[src][:, None] - c.n_free, f[free][None, :]),
                      s * red.block(src, free) * a[free][None, :])
        return C

    def _terminal_currents(self, G_list, V, scaled):
        """{block index: currents leaving each terminal [outputs, inputs] into its wired crossbar}."""
        out = {}
        for b, (blk, red) in enumerate(zip(self.circuit.dense, self.reductions(G_list))):
            if red is not None:
                I = red.currents(V[:, np.concatenate([blk.out_terms, blk.in_terms])])
                out[b] = I * float(np.asarray(blk.scale).ravel()[0]) if scaled else I
        return out

    def dense_currents(self, G_list, V, scaled=False):
        parts = super().dense_currents(self._unwired(G_list), V, scaled)
        for b, I in self._terminal_currents(G_list, V, scaled).items():
            n = len(self.circuit.dense[b].out_terms)
            parts[b] = (I[:, :n], I[:, n:])
        return parts

    def source_currents(self, G_list, v, src) -> np.ndarray:
        c = self.circuit
        g = super().source_currents(self._unwired(G_list), v, src)
        V = c.terminal_voltages(v, src)
        for b, I in self._terminal_currents(G_list, V, scaled=False).items():
            terms = np.concatenate([c.dense[b].out_terms, c.dense[b].in_terms])
            s = c.is_source_term(terms)
            np.add.at(g, (slice(None), terms[s] - c.n_free), I[:, s])
        return g

    def power(self, G_list, v, src) -> np.ndarray:
        """Power dissipated in the circuit, wires included (B,)."""
        c = self.circuit
        p = dissipated_power(c, self._unwired(G_list), v, src)
        V = c.terminal_voltages(v, src)
        for blk, red, terms, _ in self._wired_blocks(G_list):
            p = p + ((V[:, terms] @ red.l_eq) * V[:, terms]).sum(1)
        return p

    # ---- what EP and the exact gradient read ------------------------------------------------
    def wired_source_currents(self, G_list, V, used) -> np.ndarray:
        """scaled_source_currents (analog/solution.py) with the wired crossbars' L_eq."""
        c = self.circuit
        V = V if used is None else np.where(np.asarray(used)[:, None], V, 0.0)
        g = scaled_source_currents(c, self._unwired(G_list), V, used)
        for b, I in self._terminal_currents(G_list, V, scaled=True).items():
            terms = np.concatenate([c.dense[b].out_terms, c.dense[b].in_terms])
            s = c.is_source_term(terms)
            np.add.at(g, (slice(None), terms[s] - c.n_free), I[:, s])
        return g

    def drop_difference(self, G_list, b: int, Va: np.ndarray, Vb: np.ndarray, w: np.ndarray):
        """Σ_b w_b [Δ(Va)² − Δ(Vb)²] per cell of block b (None: an ideal-wire block)."""
        red = self.reductions(G_list)[b]
        if red is None:
            return None
        terms = np.concatenate([self.circuit.dense[b].out_terms, self.circuit.dense[b].in_terms])
        return red.drop_difference(Va[:, terms], Vb[:, terms], w)

    def drop_products(self, G_list, b: int, V: np.ndarray, L: np.ndarray):
        """Σ_b Δ(V)·Δ(L) per cell of block b (None: an ideal-wire block)."""
        red = self.reductions(G_list)[b]
        if red is None:
            return None
        terms = np.concatenate([self.circuit.dense[b].out_terms, self.circuit.dense[b].in_terms])
        return red.drop_products(V[:, terms], L[:, terms])


def wired_power(circuit, G_list, v, src) -> np.ndarray:
    """Power dissipated in a circuit with wired crossbars (B,), from its own reductions."""
    return WiredNativeEngine(circuit).power(G_list, np.asarray(v, float), np.asarray(src, float))
