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
voltages of each sample by back substitution through the same elimination (`drops`), or
for a batch's sums by the same substitution run on the batch's moments.
"""
from __future__ import annotations

import numpy as np
from threadpoolctl import ThreadpoolController

from .wire_inverse import ColumnInverses, spd_inverse
from .wire_kernels import drop_product_sum, row_line_recurrences

#: created after scipy.linalg is loaded, so it limits scipy's BLAS too (a controller made
#: before misses it: its threads then spin against the engine's on a busy machine)
_THREADPOOLS = ThreadpoolController()


def _chain(n: int, g_w: float) -> np.ndarray:
    """Laplacian of a row line's n nodes, its first node tied to the (held) input terminal."""
    T = np.zeros((n, n))
    idx = np.arange(n - 1)
    T[idx, idx] += g_w
    T[idx + 1, idx + 1] += g_w
    T[idx, idx + 1] = T[idx + 1, idx] = -g_w
    T[0, 0] += g_w
    return T


def _row_line_factors(G: np.ndarray, g_w: float):
    """(u, w), each (n_in, n_out), with A_j⁻¹[i, k] = u[j, min(i, k)]·w[j, max(i, k)] for
    every row line j, A_j = chain + diag(G[:, j]); None if they leave the float range.

    A_j is tridiagonal with off-diagonal −g_w, so its inverse is semiseparable: u (v) solves
    the homogeneous rows from the input end (the far end) and w = v/θ, θ their Wronskian.
    Both recurrences add positive terms (an M-matrix), so they lose no digits; O(n_out) per
    row line instead of a dense inverse (a batched LAPACK inverse of the stack: 0.2 s on a
    100 × 302 crossbar)."""
    n, m = G.shape
    a = np.full((m, n), 2.0 * g_w)
    a[:, -1] = g_w
    a += G.T                                            # diagonal of each A_j
    u, v = np.empty((m, n)), np.empty((m, n))
    u[:, 0], v[:, -1] = 1.0, 1.0
    if n > 1:
        u[:, 1] = a[:, 0] / g_w
        v[:, -2] = a[:, -1] / g_w
    compiled_uv = row_line_recurrences()
    with np.errstate(over="ignore", invalid="ignore"):
        if compiled_uv is not None:
            compiled_uv(a, g_w, u, v)
        for i in range(1, n - 1) if compiled_uv is None else ():
            u[:, i + 1] = a[:, i] / g_w * u[:, i] - u[:, i - 1]
            v[:, n - 2 - i] = a[:, n - 1 - i] / g_w * v[:, n - 1 - i] - v[:, n - i]
        w = v / (a[:, 0] * v[:, 0] - (g_w * v[:, 1] if n > 1 else 0.0))[:, None]
        ok = np.isfinite(u).all() and np.isfinite(w).all() and np.isfinite(u[:, -1:] * w[:, :1]).all()
    return (u, w) if ok else None


def _row_line_inverses(G: np.ndarray, g_w: float) -> np.ndarray:
    """(A_j⁻¹) for every row line j (n_in, n_out, n_out), dense: only where the semiseparable
    factors leave the float range (wires ≪ cells)."""
    n, m = G.shape
    A = np.broadcast_to(_chain(n, g_w), (m, n, n)).copy()
    A[:, np.arange(n), np.arange(n)] += G.T
    return np.linalg.inv(A)


def _row_line_pivots(G: np.ndarray, g_w: float) -> np.ndarray:
    """(n_in, n_out) 1/pivot of each row line's A_j = chain + diag(G[:, j]) in the Thomas
    elimination from the input end: pivot_i = a_i − g_w²/pivot_{i−1}. A_j is an M-matrix,
    so every pivot is ≥ its off-diagonal sum and the elimination needs no pivoting."""
    n, m = G.shape
    a = np.full((m, n), 2.0 * g_w)
    a[:, -1] = g_w
    a += G.T
    inv = np.empty((m, n))
    inv[:, 0] = 1.0 / a[:, 0]
    for i in range(1, n):
        inv[:, i] = 1.0 / (a[:, i] - g_w * g_w * inv[:, i - 1])
    return inv


def _row_line_solve(inv: np.ndarray, g_w: float, X: np.ndarray) -> np.ndarray:
    """A_j⁻¹ X_j for every row line j, X (n_in, n_out, B), by the Thomas recursion on the
    tridiagonal A_j (O(n_out) per column instead of a dense A_j⁻¹ product: O(n_out²))."""
    n = X.shape[1]
    Y = np.empty_like(X)
    Y[:, 0] = X[:, 0] * inv[:, 0, None]
    for i in range(1, n):                               # forward: y_i = (x_i + g_w·y_{i−1})/p_i
        Y[:, i] = (X[:, i] + g_w * Y[:, i - 1]) * inv[:, i, None]
    for i in range(n - 2, -1, -1):                      # back: z_i = y_i + g_w/p_i·z_{i+1}
        Y[:, i] += (g_w * inv[:, i, None]) * Y[:, i + 1]
    return Y


class WiredCrossbar:
    """The Kron reduction of one crossbar G (n_out, n_in) with wire segments g_w (S).

    l_eq (n_T, n_T): terminal conductance matrix, terminals ordered [outputs, inputs];
    drops(V_T): the voltage across each cell (G.ravel() order) for terminal voltages V_T.

    Elimination order (exact, dense BLAS on n_out × n_out blocks): each row line's nodes
    are eliminated first (a tridiagonal chain plus its cells: A_j = T + diag(G[:, j]), whose
    inverse is semiseparable, O(n_out²)), which couples the column nodes c(·, j) of that
    row densely; the columns then form a block-tridiagonal system along j, eliminated from
    j = 0 to the outputs (block Thomas, one inverse per row: a Neumann series cut below
    float64 rounding where the wires are metal, Cholesky where its bound fails; see
    analog/wire_inverse.py), then the products
    Φ_j from the outputs back (what each input delivers to the outputs, and the drops'
    moments). Cost O(n_in·n_out³) for the outputs' blocks of l_eq; the inputs' block adds
    O(n_out·n_in³) and is built only when read (`block`, `currents`). Drops cost
    O(n_in·n_out²) per sample; EP's sums over a batch whose one argument has no input part
    cost O(n_in·n_out³) whatever the batch (`_moment_sum`)."""

    def __init__(self, G: np.ndarray, g_w: float, recycle: "WiredCrossbar | None" = None):
        G = np.asarray(G, float)
        if not (np.isfinite(g_w) and g_w > 0):
            raise ValueError(f"wire segment conductance {g_w!r} must be finite and > 0")
        self.shape, self.g_w, self._G = G.shape, float(g_w), G
        self._buffers = recycle._release() if recycle is not None and recycle.shape == G.shape else {}
        with _THREADPOOLS.limit(limits=1, user_api="blas"):
            self._out_out, self._out_in = self._reduce(G, float(g_w))
        self._l_eq = self._mb = None
        self._pivots = _row_line_pivots(G, float(g_w))

    def _buffer(self, name: str) -> np.ndarray:
        """An (n_in, n_out, n_out) array, the recycled reduction's where there is one: a fresh
        one (24 MB on the Fashion-sized block) costs about as much in first-touch page faults
        as the arithmetic that fills it."""
        n, m = self.shape
        if name not in self._buffers:
            self._buffers[name] = np.empty((m, n, n))
        return self._buffers[name]

    def _release(self) -> dict:
        """This reduction's large arrays, for its successor (`recycle`); unusable after."""
        buffers, self._buffers = self._buffers, {}
        self._gM = self._phi = None
        return buffers

    def _reduce(self, G: np.ndarray, g_w: float) -> np.ndarray:
        """l_eq's output blocks (outputs × outputs, outputs × inputs); keeps what the inputs'
        block and the drops need (each M_j⁻¹, b_j, Φ_j, the row lines' factors)."""
        n, m = G.shape
        D = G.T                                                       # (m, n): D[j] = G[:, j]
        self._factors = _row_line_factors(G, g_w)                     # each row line with its cells
        if self._factors is None:
            A_inv = _row_line_inverses(G, g_w)
            DAD = D[:, :, None] * A_inv * D[:, None, :]
            first, corner = A_inv[:, :, 0], A_inv[:, 0, 0]
        else:                  # D A⁻¹ D is semiseparable: its upper triangle is (D·u)ᵢ(D·w)ₖ, i ≤ k
            u, w = self._factors
            Du, Dw = D * u, D * w
            first, corner = w, u[:, 0] * w[:, 0]                      # A⁻¹[:, 0] = u_0·w, A⁻¹[0, 0]
        segments = np.where(np.arange(m) == 0, 1.0, 2.0)             # column segments at c(·, j)
        diagonal = D + g_w * segments[:, None]
        self._b = g_w * D * first
        self._in_diag = g_w - g_w * g_w * corner                      # inputs through their row lines
        self._gM = self._buffer("gM")                               # g_w·M_j⁻¹
        self.inverses = ColumnInverses(g_w, n)
        for j in range(m):         # forward elimination: M_j = H_j − g_w²·M_{j−1}⁻¹, H_j = diag − D A_j⁻¹ D
            if self._factors is not None:                           # Neumann series or Cholesky
                self.inverses.next(Du[j], Dw[j], self._gM[j - 1] if j else None, diagonal[j], self._gM[j])
                continue
            M = -DAD[j]
            if j:
                M -= g_w * self._gM[j - 1]
            M.flat[:: n + 1] += diagonal[j]
            spd_inverse(M, g_w, self._gM[j])
        self._phi = self._buffer("phi")
        F = self._phi_chain()
        out_out = g_w * np.eye(n) - g_w * self._gM[-1]
        return 0.5 * (out_out + out_out.T), -F

    def _phi_chain(self) -> np.ndarray:
        """Φ_j = g_w·M_j⁻¹ ⋯ g_w·M_{m−1}⁻¹ (the outputs' reach to the column nodes c(·, j), inputs
        at 0) from the outputs back, into self._phi; returns Φ_kᵀ b_k (n_out, n_in), what input k
        delivers to the outputs (the M_j⁻¹ are symmetric), each while its Φ_k is in cache: one
        n × n product per row instead of carrying every input along the sweep (2/3 of the flops)."""
        m, n = self.shape[1], self.shape[0]
        gM, b, phi = self._gM, self._b, self._phi
        out = np.empty((m, n))
        phi[-1] = gM[-1]
        np.matmul(b[-1], phi[-1], out=out[-1])
        for j in range(m - 2, -1, -1):
            np.matmul(gM[j], phi[j + 1], out=phi[j])
            np.matmul(b[j], phi[j], out=out[j])
        return out.T

    def _input_block(self) -> np.ndarray:
        """The inputs' block of l_eq (n_in, n_in): the forward sweep again, accumulating each
        eliminated column's F_jᵀ M_j⁻¹ F_j (the O(n_out·n_in³) term, so only on demand: the
        Newton iteration needs it only where a block's inputs are free nodes)."""
        n, m = self.shape
        s_in = np.diag(self._in_diag)
        F = np.zeros((n, m))
        for j, gMi in enumerate(self._gM):
            F[:, j] = self._b[j]
            gMF = gMi @ F[:, : j + 1]
            s_in[: j + 1, : j + 1] -= (F[:, : j + 1].T @ gMF) / self.g_w
            F[:, : j + 1] = gMF
        return 0.5 * (s_in + s_in.T)

    @property
    def l_eq(self) -> np.ndarray:
        """(n_T, n_T) terminal conductance matrix, terminals ordered [outputs, inputs]."""
        if self._l_eq is None:
            with _THREADPOOLS.limit(limits=1, user_api="blas"):
                s_in = self._input_block()
            self._l_eq = np.block([[self._out_out, self._out_in], [self._out_in.T, s_in]])
        return self._l_eq

    def currents(self, V_T: np.ndarray) -> np.ndarray:
        """V_T @ l_eq (B, n_T), the inputs' block read only where some input is not at 0 V."""
        n = self.shape[0]
        if self._l_eq is not None or np.any(V_T[:, n:]):
            return V_T @ self.l_eq
        return V_T[:, :n] @ np.concatenate([self._out_out, self._out_in], axis=1)

    def block(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """l_eq[np.ix_(rows, cols)] for boolean masks over the terminals, without the inputs'
        block unless both select inputs."""
        n = self.shape[0]
        if self._l_eq is not None or (rows[n:].any() and cols[n:].any()):
            return self.l_eq[np.ix_(rows, cols)]
        top = np.concatenate([self._out_out, self._out_in], axis=1)
        out = np.zeros((rows.sum(), cols.sum()))
        ro, co = rows[:n], cols[:n]
        out[: ro.sum()] = top[ro][:, cols]
        out[ro.sum():, : co.sum()] = self._out_in.T[rows[n:]][:, co]
        return out

    def _column_stack(self, V_T: np.ndarray):
        """(column-node voltages (n_in, n_out, B), inputs (n_in, B)) for terminal voltages V_T
        (B, n_T): the block Thomas back substitution on the batch (its forward sweep only
        where some input is not at 0 V)."""
        n, m = self.shape
        g_w = self.g_w
        V_T = np.asarray(V_T, float)
        out, inp = V_T[:, :n].T, V_T[:, n:].T                         # (n, B), (m, B)
        gM, Mb = self._gM, self._Mb()
        C = np.empty((m, n, V_T.shape[0]))
        forward = bool(inp.any())
        for j in range(m if forward else 0):   # forward: h_j = M_j⁻¹ (g_w·h_{j−1} + b_j·in_j)
            if j:
                np.matmul(gM[j], C[j - 1], out=C[j])
                C[j] += Mb[j][:, None] * inp[j][None, :]
            else:
                C[j] = Mb[j][:, None] * inp[j][None, :]
        c_next = out
        for j in range(m - 1, -1, -1):   # back: c_j = h_j + g_w·M_j⁻¹ c_{j+1}
            if forward:
                C[j] += gM[j] @ c_next
            else:
                np.matmul(gM[j], c_next, out=C[j])
            c_next = C[j]
        return C, np.ascontiguousarray(inp)

    def _Mb(self) -> np.ndarray:
        """M_j⁻¹ b_j (n_in, n_out): input j's current into its column nodes, once per reduction."""
        if self._mb is None:
            self._mb = np.einsum("jik,jk->ji", self._gM, self._b / self.g_w)
        return self._mb

    def _drop_stack(self, V_T: np.ndarray) -> np.ndarray:
        """Cell voltages (n_in, n_out, B) for terminal voltages V_T (B, n_T)."""
        return self._row_drop_stack(*self._column_stack(V_T))

    def _row_drop_stack(self, C: np.ndarray, inp: np.ndarray) -> np.ndarray:
        """Cell voltages (n_in, n_out, B) from column-node voltages C (n_in, n_out, B) and inputs
        (n_in, B): each row line's cells from its column nodes."""
        g_w = self.g_w
        # Δ_j = r_j − c_j = A_j⁻¹ (g_w·e_0·in_j − T c_j) = −g_w·A_j⁻¹ (T c_j − g_w·e_0·in_j)/g_w:
        # the chain's own currents, no cancellation between r and c
        step = C[:, 1:] - C[:, :-1]
        Tc = np.empty_like(C)
        Tc[:, :-1] = -step
        Tc[:, -1] = 0.0
        Tc[:, 1:] += step
        Tc[:, 0] += C[:, 0] - inp
        Tc *= -g_w
        return _row_line_solve(self._pivots, g_w, Tc)

    def _product_sum(self, Va: np.ndarray, Vb: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Σ_b w_b Δ_b(Va)·Δ_b(Vb) per cell (n_in, n_out): compiled where numba is (wire_kernels)."""
        kernel = drop_product_sum()
        if kernel is None:
            return (self._drop_stack(Va) * self._drop_stack(Vb)) @ w
        (Ca, ina), (Cb, inb) = self._column_stack(Va), self._column_stack(Vb)
        return kernel(Ca, ina, Cb, inb, self._pivots, self.g_w, np.ascontiguousarray(w, float))

    def _moment_sum(self, Va: np.ndarray, Vb: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Σ_b w_b Δ_b(Va)·Δ_b(Vb) per cell (n_in, n_out) when Va's inputs are all 0 V, at a cost
        independent of the batch. Then Va's column nodes are c_j = Φ_j·a_out, so with
        Q_j = Σ_b w_b c_j(Vb_b)·a_out,bᵀ (n_out × n_out; the block Thomas sweep run on the
        batch's moments instead of its samples) and S_j = Σ_b w_b in_j(Vb_b)·a_out,bᵀ the sum is
        Σ_k Δ(Φ_j e_k)_i · Δ(Q_j e_k, S_jk)_i: the per-sample sums over n_out pseudo-samples."""
        n, m = self.shape
        Wa = Va[:, :n] * w[:, None]
        S_out, S_in = Vb[:, :n].T @ Wa, np.ascontiguousarray(Vb[:, n:].T @ Wa)
        gM, Mb = self._gM, self._Mb()
        Q = self._buffer("Q")                  # scratch: fully written below
        Q[0] = Mb[0][:, None] * S_in[0]
        for j in range(1, m):                  # forward: H_j = g_w·M_j⁻¹ H_{j−1} + M_j⁻¹ b_j ⊗ S_j
            np.matmul(gM[j], Q[j - 1], out=Q[j])
            Q[j] += Mb[j][:, None] * S_in[j]
        nxt = S_out
        for j in range(m - 1, -1, -1):         # back: Q_j = H_j + g_w·M_j⁻¹ Q_{j+1}
            Q[j] += gM[j] @ nxt
            nxt = Q[j]
        kernel = drop_product_sum()
        if kernel is None:
            return (self._row_drop_stack(self._phi, np.zeros((m, n))) * self._row_drop_stack(Q, S_in)).sum(2)
        return kernel(self._phi, np.zeros((m, n)), Q, S_in, self._pivots, self.g_w, np.ones(n))

    def _sum_of_products(self, Va: np.ndarray, Vb: np.ndarray, w: np.ndarray, chunk: int) -> np.ndarray:
        """Σ_b w_b Δ_b(Va)·Δ_b(Vb) per cell, of G's shape: by moments where one argument has no
        input part and the batch is large enough to pay for them, else by chunks of samples."""
        n = self.shape[0]
        w = np.asarray(w, float)
        for a, b in ((Va, Vb), (Vb, Va)):
            if 3 * len(a) >= 2 * n and not a[:, n:].any():
                return self._moment_sum(a, b, w).T
        out = np.zeros((self.shape[1], n))
        for lo in range(0, len(Va), chunk):
            out += self._product_sum(Va[lo: lo + chunk], Vb[lo: lo + chunk], w[lo: lo + chunk])
        return out.T

    def drops(self, V_T: np.ndarray) -> np.ndarray:
        """Voltage across every cell (B, n_out·n_in) for terminal voltages V_T (B, n_T)."""
        d = self._drop_stack(np.atleast_2d(V_T))
        return d.transpose(2, 1, 0).reshape(d.shape[2], -1)

    def drop_difference(self, Va: np.ndarray, Vb: np.ndarray, w: np.ndarray, chunk: int = 256) -> np.ndarray:
        """Σ_b w_b [Δ_b(Va)² − Δ_b(Vb)²] per cell, of G's shape, as Σ_b w_b Δ_b(Va − Vb)·Δ_b(Va + Vb)
        (the drops are linear in V_T): no cancellation between two nearly equal squares, and
        where the two phases share their inputs (EP's nudged phases) the difference has no
        input part, so the sum goes by moments (`_moment_sum`)."""
        return self._sum_of_products(Va - Vb, Va + Vb, w, chunk)

    def drop_products(self, V_T: np.ndarray, W_T: np.ndarray, chunk: int = 256) -> np.ndarray:
        """Σ_b Δ_b(V)·Δ_b(W) per cell, of G's shape (the adjoint product of the exact gradient)."""
        return self._sum_of_products(V_T, W_T, np.ones(len(V_T)), chunk)


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
