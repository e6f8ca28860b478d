"""Crossbar wire resistance (IR drop), reduced exactly to the crossbar's terminals.

Layout of a dense block with n_out output lines (columns) and n_in input lines (rows), one
wire segment of conductance g_w between neighbouring cells:

    input j  ──g_w── r(j,0) ──g_w── r(j,1) ── … ── r(j,n_out−1)        (row line j)
    column i: c(i,0) ──g_w── c(i,1) ── … ── c(i,n_in−1) ──g_w── output i
    cell (i, j): the device G[i, j] between r(j, i) and c(i, j)

The inputs drive their rows from one edge and the outputs are read at the far end of
their columns, so the cell farthest from both (i = n_out−1, j = 0) sees the largest drop.

The wires are linear, so the network between the n_out + n_in terminals is a linear
network: with L the Laplacian of all its nodes, partitioned into internal (I) and terminal
(T) nodes, the currents the terminals deliver are L_eq·V_T with the Kron reduction (Schur
complement)

    L_eq = L_TT − L_TI · L_II⁻¹ · L_IT,

and the internal voltages are V_I = −L_II⁻¹ L_IT · V_T. Both are computed once per
conductance update (see WiredCrossbar for the elimination order); the Newton iteration
then sees a dense terminal matrix instead of 2·n_out·n_in extra nodes. The energy of the
block is ½ V_Tᵀ L_eq V_T = ½ Σ cells G·Δ² + ½ Σ segments g_w·δ², so EP stays exact: the
gradient of a cell is its own squared drop Δ = r(j,i) − c(i,j), read from the internal
voltages through the per-cell map `drop_map` (Δ = V_T · drop_mapᵀ).
"""
from __future__ import annotations

import numpy as np


def _chain(n: int, g_w: float) -> np.ndarray:
    """Laplacian of a row line's n nodes, its first node tied to the (held) input terminal."""
    T = np.zeros((n, n))
    idx = np.arange(n - 1)
    T[idx, idx] += g_w
    T[idx + 1, idx + 1] += g_w
    T[idx, idx + 1] = T[idx + 1, idx] = -g_w
    T[0, 0] += g_w
    return T


class WiredCrossbar:
    """The Kron reduction of one crossbar G (n_out, n_in) with wire segments g_w (S).

    l_eq (n_T, n_T): terminal conductance matrix, terminals ordered [outputs, inputs];
    drop_map (n_out·n_in, n_T): the voltage across each cell (G.ravel() order) per volt at
    each terminal.

    Elimination order (exact, dense BLAS on n_out × n_out blocks): each row line's nodes
    are eliminated first (a tridiagonal chain plus its cells: A_j = T + diag(G[:, j])),
    which couples the column nodes c(·, j) of that row densely; the columns then form a
    block-tridiagonal system along j, eliminated from j = 0 to the outputs (block Thomas),
    carrying the inputs already passed. Cost O(n_in·n_out³ + n_out²·n_in² + n_out·n_in³), against minutes
    for a general sparse LU with one solve per terminal on a 150→100 block."""

    def __init__(self, G: np.ndarray, g_w: float):
        G = np.asarray(G, float)
        if not (np.isfinite(g_w) and g_w > 0):
            raise ValueError(f"wire segment conductance {g_w!r} must be finite and > 0")
        n, m = G.shape
        self.shape, self.g_w, self._G = (n, m), float(g_w), G
        A = np.broadcast_to(_chain(n, g_w), (m, n, n)).copy()
        A[:, np.arange(n), np.arange(n)] += G.T
        self._A_inv = np.linalg.inv(A)                                # each row line with its cells
        D = G.T                                                       # (m, n): D[j] = G[:, j]
        H = -D[:, :, None] * self._A_inv * D[:, None, :]
        segments = np.where(np.arange(m) == 0, 1.0, 2.0)             # column segments at c(·, j)
        H[:, np.arange(n), np.arange(n)] += D + g_w * segments[:, None]
        b = g_w * D * self._A_inv[:, :, 0]
        s_in = np.diag(g_w - g_w * g_w * self._A_inv[:, 0, 0])       # inputs through their row lines
        self._M_inv, self._F = [], []
        for j in range(m):   # forward sweep: c_j = M_j⁻¹ (g_w·c_{j+1} + F_j·in_{0..j})
            if j == 0:
                Mj, Fj = H[0], b[0][:, None]
            else:
                Mj = H[j] - g_w * g_w * self._M_inv[-1]
                Fj = np.concatenate([g_w * (self._M_inv[-1] @ self._F[-1]), b[j][:, None]], axis=1)
            Mi = np.linalg.inv(Mj)
            MF = Mi @ Fj
            s_in[: j + 1, : j + 1] -= Fj.T @ MF
            self._M_inv.append(Mi)
            self._F.append(Fj)
        l_eq = np.zeros((n + m, n + m))
        l_eq[:n, :n] = g_w * np.eye(n) - g_w * g_w * self._M_inv[-1]
        l_eq[:n, n:] = -g_w * MF
        l_eq[n:, :n] = l_eq[:n, n:].T
        l_eq[n:, n:] = s_in
        self.l_eq = 0.5 * (l_eq + l_eq.T)
        self._drop_map = None

    @property
    def drop_map(self) -> np.ndarray:
        """(n_out·n_in, n_T), computed on first use by back substitution (solves need only l_eq)."""
        if self._drop_map is None:
            n, m = self.shape
            g_w, n_T = self.g_w, n + m
            out = np.empty((n * m, n_T))
            upper = np.zeros((n, n_T))
            upper[:, :n] = g_w * np.eye(n)           # c_{m−1} meets the outputs
            for j in range(m - 1, -1, -1):
                rhs = upper
                rhs[:, n: n + j + 1] += self._F[j]
                Cj = self._M_inv[j] @ rhs
                Rj = self._A_inv[j] @ (self._G[:, j][:, None] * Cj)
                Rj[:, n + j] += g_w * self._A_inv[j][:, 0]
                out[np.arange(n) * m + j] = Rj - Cj
                upper = g_w * Cj
            self._drop_map = out
        return self._drop_map

    def drops(self, V_T: np.ndarray) -> np.ndarray:
        """Voltage across every cell (B, n_out·n_in) for terminal voltages V_T (B, n_T)."""
        return V_T @ self.drop_map.T

    def squared_drop_sum(self, V_T: np.ndarray, w: np.ndarray, chunk: int = 256) -> np.ndarray:
        """Σ_b w_b Δ_b² per cell, of G's shape."""
        out = np.zeros(self.drop_map.shape[0])
        for lo in range(0, len(V_T), chunk):
            d = self.drops(V_T[lo: lo + chunk])
            out += w[lo: lo + chunk] @ (d * d)
        return out.reshape(self.shape)

    def drop_products(self, V_T: np.ndarray, W_T: np.ndarray, chunk: int = 256) -> np.ndarray:
        """Σ_b Δ_b(V)·Δ_b(W) per cell, of G's shape (the adjoint product of the exact gradient)."""
        out = np.zeros(self.drop_map.shape[0])
        for lo in range(0, len(V_T), chunk):
            out += (self.drops(V_T[lo: lo + chunk]) * self.drops(W_T[lo: lo + chunk])).sum(0)
        return out.reshape(self.shape)


def netlist_lines(b: int, R_cells: np.ndarray, out_nodes, in_nodes, r_segment: float, prefix: str) -> list[str]:
    """SPICE lines of block b's crossbar with its wires: the cell resistors keep their names
    R<b>_<i>_<j> (so `alter` reaches them); RWR<b>_<j>_<i> and RWC<b>_<i>_<j> are the row and
    column segments (layout in the module docstring); internal nodes are <prefix>r<j>_<i> and
    <prefix>c<i>_<j>."""
    from .spice_number import spice_number as _num
    n, m = R_cells.shape
    seg = _num(r_segment)
    lines = []
    for j, term in enumerate(in_nodes):
        prev = term
        for i in range(n):
            node = f"{prefix}r{j}_{i}"
            lines.append(f"RWR{b}_{j}_{i} {prev} {node} {seg}")
            prev = node
    for i, term in enumerate(out_nodes):
        for j in range(m):
            nxt = term if j == m - 1 else f"{prefix}c{i}_{j + 1}"
            lines.append(f"RWC{b}_{i}_{j} {prefix}c{i}_{j} {nxt} {seg}")
            lines.append(f"R{b}_{i}_{j} {prefix}r{j}_{i} {prefix}c{i}_{j} {_num(R_cells[i, j])}")
    return lines
