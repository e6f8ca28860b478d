"""The conductance-dependent matrices of the nodal equations, assembled from the crossbars:
K, the linear part of F's Hessian, and C, the map from the source voltages to the linear
residual's affine part (c = src @ C + c0). Rebuilt after every conductance update, so a
dense block's grid of entries is written by slicing, not element by element."""
from __future__ import annotations

import numpy as np

from . import crossbar as xb


def conductance_matrix(circuit, term_free, term_coef, G_list, structural=False) -> np.ndarray:
    """K (n_free, n_free) from the dense blocks' conductances G_list, each row weighted by
    its energy scale, plus gmin·scale on the diagonal; with `structural`, G as given and no
    gmin (for the sparsity pattern). term_free / term_coef: each terminal's free unknown
    (−1 for sources) and its coefficient (an amplifier output: its gain)."""
    c, n = circuit, circuit.n_free
    K = np.zeros((n, n))
    for blk, G in zip(c.dense, G_list):
        G = G if structural else blk.scaled(G)     # per-row energy scale
        fo, ao = term_free[blk.out_terms], term_coef[blk.out_terms]
        fi, ai = term_free[blk.in_terms], term_coef[blk.in_terms]
        np.add.at(K, (fo, fo), ao**2 * G.sum(1))
        if blk.cols is not None:     # sparse: one entry per patch edge
            rows, cols = xb.edges(blk)
            g, fe, ae = G.ravel(), fi[cols], ai[cols]
            m = fe >= 0
            np.add.at(K, (fe[m], fe[m]), ae[m] ** 2 * g[m])
            off = -ao[rows[m]] * ae[m] * g[m]
            np.add.at(K, (fo[rows[m]], fe[m]), off)
            np.add.at(K, (fe[m], fo[rows[m]]), off)
            continue
        free_in = fi >= 0
        fi_f, ai_f = fi[free_in], ai[free_in]
        np.add.at(K, (fi_f, fi_f), ai_f**2 * G[:, free_in].sum(0))
        off = -ao[:, None] * ai_f[None, :] * G[:, free_in]
        _scatter_add(K, fo, fi_f, off)
        _scatter_add(K, fi_f, fo, off.T)
    if not structural:
        K[np.diag_indices(n)] += c.gmin * c.free_scale
    return K


def source_map(circuit, term_free, term_coef, G_list):
    """C (n_sources, n_free) of the affine residual c = src @ C + c0, straight from the
    crossbar edges whose input is a source: −(scaled) G at (source, the row's free node),
    times the row terminal's coefficient. A scipy CSR matrix when locally connected blocks
    leave it mostly zeros (2 % for 28×28 pixels → LC → 20); else dense."""
    c = circuit
    parts = []    # per block: (source rows, node columns, values): a dense block's as a grid
    for blk, G in zip(c.dense, G_list):
        Gs = blk.scaled(G)
        fo, ao = term_free[blk.out_terms], term_coef[blk.out_terms]
        src = c.is_source_term(blk.in_terms)
        if not src.any():
            continue
        if blk.cols is None:
            parts.append((blk.in_terms[src] - c.n_free, fo, -(ao[:, None] * Gs[:, src]).T))
        else:
            r, k = xb.edges(blk)
            m = src[k]
            parts.append((blk.in_terms[k[m]] - c.n_free, fo[r[m]], -ao[r[m]] * Gs.ravel()[m]))
    shape = (c.n_sources, c.n_free)
    if any(b.cols is not None for b in c.dense):
        rows, cols, vals = (np.concatenate(a) if a else np.zeros(0, int) for a in zip(*map(_triplets, parts)))
        if len(vals) < 0.2 * shape[0] * shape[1]:
            from scipy import sparse
            return sparse.csr_matrix((vals, (rows, cols)), shape=shape)
    C = np.zeros(shape)
    for rows, cols, vals in parts:
        _scatter_add(C, rows, cols, vals)
    return C


def _triplets(part):
    """(rows, cols, values) of a `source_map` part, a grid spread out."""
    rows, cols, vals = part
    if vals.ndim == 2:
        rows, cols = (a.ravel() for a in np.broadcast_arrays(rows[:, None], cols[None, :]))
    return rows.astype(int), cols.astype(int), vals.ravel()


def _scatter_add(M, rows, cols, vals):
    """M[rows, cols] += vals, repeated pairs summed; vals 2-D: the grid rows × cols (by
    slicing when no index repeats: a dense block's, 30 times faster than np.add.at)."""
    if vals.ndim == 2 and _distinct(rows) and _distinct(cols):
        M[np.ix_(rows, cols)] += vals
    elif vals.ndim == 2:
        np.add.at(M, (rows[:, None], cols[None, :]), vals)
    else:
        np.add.at(M, (rows, cols), vals)


def _distinct(idx: np.ndarray) -> bool:
    """No index repeats (indices ≥ 0: one counting pass, no sort)."""
    return len(idx) == 0 or (idx.min() >= 0 and np.bincount(idx).max() <= 1)
