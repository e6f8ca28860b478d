"""The energy scale of every free node of a compiled circuit (see analog/circuit.py's
module docstring): the weights under which the circuit's KCL is the stationarity of one
energy, found by solving the per-edge constraints a crossbar and its amplifiers impose."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .circuit import DenseBlock


def energy_scales(n_free: int, n_sources: int, dense: list[DenseBlock], amp_in: np.ndarray, amp_gain: np.ndarray,
                  amp_layer: list[str]) -> np.ndarray:
    """Energy scale of every free node (see the module docstring), (n_free,).

    Each crossbar edge from a free node j, or from amplifier k's output, to a row node i is a
    constraint s_i = s_j, or s_i = s(in_k)/A_k² (linear in the log domain). They are solved by
    a traversal of the constraint graph; each connected part is normalised so that its
    first crossbar's rows have a geometric-mean scale of 1 (so a block of uniform gains
    keeps s = 1 at the front, 1/A² behind one amplifier, …). ValueError when the
    constraints contradict each other (the circuit then has no energy function)."""
    adj, first_block = _scale_constraints(n_free, n_sources, dense, amp_in, amp_gain, amp_layer)
    return _solve_scales(adj, n_free, first_block)


def _scale_constraints(n_free: int, n_sources: int, dense: list[DenseBlock], amp_in: np.ndarray,
                       amp_gain: np.ndarray, amp_layer: list[str]) -> tuple[list, np.ndarray]:
    """The constraint graph of `energy_scales` (adjacency lists of (node, factor, forward,
    where)) and the first crossbar whose rows each free node is (−1: none)."""
    n_t = n_free + n_sources
    # constraint graph on the free nodes plus one node per crossbar with non-source inputs
    # (all its rows share one scale R_b): rows — R_b (factor 1), R_b — each input (s(in_k) =
    # R_b·A_k² behind amplifier k), so a crossbar costs n_out + n_in edges, not n_out·n_in.
    # Factors are multiplied, not exponentiated logs, so uniform gains give exactly 1/A², …
    n_v = n_free + len(dense)
    adj: list[list[tuple[int, float, bool, str]]] = [[] for _ in range(n_v)]
    first_block = np.full(n_free, -1)

    def link(i: int, j: int, f: float, where: str) -> None:   # s_j = s_i · f
        adj[i].append((j, f, True, where))
        adj[j].append((i, f, False, where))

    for b, blk in enumerate(dense):
        rows = blk.out_terms
        first_block[rows] = np.where(first_block[rows] < 0, b, first_block[rows])
        bn = n_free + b
        feeding = sorted({amp_layer[int(t) - n_t] for t in blk.in_terms if t >= n_t})
        where = f"Dense layer '{blk.layer.name}'" + (f" (fed by amplifier layer(s) {feeding})" if feeding else "")
        for t in blk.in_terms:
            if t < n_free:
                link(bn, int(t), 1.0, where)
            elif t >= n_t:
                k = int(t) - n_t
                link(bn, int(amp_in[k]), float(amp_gain[k]) ** 2, where)
        if adj[bn]:
            for i in rows:
                link(bn, int(i), 1.0, where)
    return adj, first_block


def _solve_scales(adj: list, n_free: int, first_block: np.ndarray) -> np.ndarray:
    """Scales of the free nodes from the constraint graph, by a traversal of each connected
    part, normalised at its front crossbar; ValueError on a contradiction."""
    vals = np.full(len(adj), np.nan)
    for root in range(n_free):
        if not np.isnan(vals[root]):
            continue
        vals[root] = 1.0
        comp, stack = [root], [root]
        while stack:
            i = stack.pop()
            for j, f, forward, where in adj[i]:
                want = vals[i] * f if forward else vals[i] / f
                if np.isnan(vals[j]):
                    vals[j] = want
                    comp.append(j)
                    stack.append(j)
                elif abs(vals[j] - want) > 1e-9 * abs(want):
                    raise ValueError(f"{where}: its inputs cannot share one energy scale (amplifiers of "
                                     "different gains, or nodes before and after an amplifier), so the "
                                     "backward currents are not reciprocal: the circuit has no energy function "
                                     "(non-reciprocal). Per-amplifier gains may vary only in the first "
                                     "amplifier layer.")
        comp = np.array(comp)
        free = comp[comp < n_free]
        front = vals[free[first_block[free] == first_block[free].min()]]
        gauge = front[0] if np.all(front == front[0]) else float(np.exp(np.log(front).mean()))
        vals[comp] /= gauge
    return vals[:n_free]
