"""Crossbar arithmetic for dense and sparse (locally connected) blocks alike.

A block's conductances G have shape `g_shape(blk)`: (n_out, n_in) for a dense crossbar,
(n_out, P) for a sparse one, whose `blk.cols` (n_out, P) names the input column (index into
`blk.in_terms`) of every entry. Every function here gives the same numbers as the dense
formula applied to the full (n_out, n_in) matrix with zeros off the patches, without
building that matrix (sparse products go through scipy.sparse CSR, built per call from the
compact array: O(n_out·P), no sort)."""
from __future__ import annotations

import numpy as np
from scipy import sparse as _sp

_CHUNK = 256   # samples per gather in edge_outer (bounds B·n_out·P memory)


def g_shape(blk) -> tuple[int, int]:
    if blk.cols is None:
        return (len(blk.out_terms), len(blk.in_terms))
    return tuple(blk.cols.shape)


def n_elements(blk) -> int:
    r, c = g_shape(blk)
    return r * c


def edges(blk) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of every conductance, in the order of G.ravel()."""
    r, c = g_shape(blk)
    if blk.cols is None:
        return np.repeat(np.arange(r), c), np.tile(np.arange(c), r)
    return np.repeat(np.arange(r), c), blk.cols.ravel()


def matrix(blk, G):
    """G as an (n_out, n_in) operator: G itself (dense) or a CSR matrix (sparse)."""
    if blk.cols is None:
        return G
    r, p = blk.cols.shape
    return _sp.csr_matrix((np.asarray(G, float).ravel(), blk.cols.ravel(), np.arange(0, r * p + 1, p)),
                          shape=(r, len(blk.in_terms)))


def row_sum(blk, G) -> np.ndarray:
    return np.asarray(G).sum(1)


def col_sum(blk, G) -> np.ndarray:
    if blk.cols is None:
        return np.asarray(G).sum(0)
    return np.bincount(blk.cols.ravel(), np.asarray(G, float).ravel(), minlength=len(blk.in_terms))


def times_t(blk, G, vi: np.ndarray) -> np.ndarray:
    """vi @ Gᵀ, (B, n_out): Σ_j G_ij vi_j."""
    if blk.cols is None:
        return vi @ G.T
    return np.asarray((matrix(blk, G) @ vi.T).T)


def times(blk, G, vo: np.ndarray) -> np.ndarray:
    """vo @ G, (B, n_in): Σ_i vo_i G_ij."""
    if blk.cols is None:
        return vo @ G
    return np.asarray((matrix(blk, G).T @ vo.T).T)


def currents(blk, G, vo, vi) -> tuple[np.ndarray, np.ndarray]:
    """Currents leaving each output node and each input node through the crossbar."""
    return vo * row_sum(blk, G) - times_t(blk, G, vi), vi * col_sum(blk, G) - times(blk, G, vo)


def quadratic(blk, G, vo, vi) -> np.ndarray:
    """Σ over conductances of G·(V_out − V_in)², per sample (B,)."""
    return (vo**2) @ row_sum(blk, G) + (vi**2) @ col_sum(blk, G) - 2.0 * (times_t(blk, G, vi) * vo).sum(1)


def per_column(blk, vec: np.ndarray) -> np.ndarray:
    """A per-input-column vector (n_in,) spread over G's shape."""
    return vec[None, :] if blk.cols is None else vec[blk.cols]


def edge_outer(blk, A: np.ndarray, Bm: np.ndarray) -> np.ndarray:
    """Σ_b A[b, i]·Bm[b, column of entry (i, e)], of G's shape (Aᵀ Bm for a dense block)."""
    if blk.cols is None:
        return A.T @ Bm
    out = np.zeros(blk.cols.shape)
    for lo in range(0, len(A), _CHUNK):
        out += np.einsum("bi,bip->ip", A[lo:lo + _CHUNK], Bm[lo:lo + _CHUNK][:, blk.cols], optimize=True)
    return out


def squared_drop_sum(blk, V: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Σ_b w_b (V_out,i − V_in,j)² for every conductance of a block, of G's shape."""
    vo, vi = V[:, blk.out_terms], V[:, blk.in_terms]
    return ((vo**2).T @ w)[:, None] + per_column(blk, (vi**2).T @ w) - 2.0 * edge_outer(blk, vo * w[:, None], vi)


def squared_drop_difference(blk, Va: np.ndarray, Vb: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Σ_b w_b [(Va_out,i − Va_in,j)² − (Vb_out,i − Vb_in,j)²] for every conductance, of G's
    shape: EP's two phases, whose drops differ by little, as Σ w (δ_i − δ_j)(σ_i − σ_j)
    with δ = Va − Vb and σ = Va + Vb taken node by node (no difference of two large sums
    of squares; one GEMM over both phases)."""
    d, s = Va - Vb, Va + Vb
    do, di, so, si = d[:, blk.out_terms], d[:, blk.in_terms], s[:, blk.out_terms], s[:, blk.in_terms]
    wc = w[:, None]
    rows = (do * so).T @ w
    cols = (di * si).T @ w
    return (rows[:, None] + per_column(blk, cols)
            - edge_outer(blk, np.concatenate([do * wc, so * wc]), np.concatenate([si, di])))
