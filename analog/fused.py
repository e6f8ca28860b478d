"""Compiled loops for the Newton iteration's evaluation of a layered block (analog/newton.py)
and its relaxation sweeps (analog/relax.py), where the Schur partition is exact (K_EE
diagonal: the locally connected block, whose 358 eliminated nodes all couple to its 32
dense-layer nodes; also the dense blocks) and every device is a plain Shockley diode.

numpy evaluates F, its gradient r, the Hessian diagonal d and the branch voltages as some
twenty calls per trial point, each a pass over (B, n) or (B, n_devices) arrays. Here: v K by
BLAS, one compiled gather of the branch voltages and exponents, one `np.exp` over the batch,
one compiled loop that scatters currents and conductances onto the nodes and sums F. The
K product and the exponentials stay out of the loops: numba's scalar exp took 104 µs for
32 × 740 against numpy's vectorised 31 µs (AVX-512), its K product 116 µs against BLAS's
77, so a fully compiled pass was no faster than numpy. float64, no fast-math: the same sums
in another order (results equal to rounding).

Compiled on first use (about a second, then cached on disk by numba); without numba,
`evaluator()` and `relaxer()` are None and the numpy paths remain."""
from __future__ import annotations

import numpy as np

from .kernels import compiled


def evaluator():
    """The compiled kernels (gather, scatter) of `evaluate`, or None without numba."""
    gather, scatter = compiled("gather", _exponent_args), compiled("scatter", _scatter)
    return None if gather is None or scatter is None else (gather, scatter)


def fused_plan(s, stack):
    """The arrays the kernels need for this Schur solver's partition and device stack, or None
    where they do not apply (eliminated nodes that couple, no kept nodes, or devices other
    than one group of plain Shockley diodes)."""
    if not s.exact or not len(s.R) or len(stack.groups) != 1 or evaluator() is None:
        return None
    g = stack.groups[0]
    if not g["plain"]:
        return None
    c = np.ascontiguousarray
    return dict(f=c(g["f"].astype(np.int64)), sa=c(g["sa"]), inv_vte=float(g["inv_vte"]), r_em1=c(g["r_em1"]),
                d_e=c(g["d_e"]), e_em1=c(g["e_em1"]), e_u=c(g["e_u"]))


def evaluate(plan, K, v, c, off):
    """(F, r, d, [u]) at states v (B, n) for the affine residual part c (B, n) and the devices'
    branch-voltage offsets off (B, n_devices): v K by BLAS (K: the engine's K operator), the
    exponentials by numpy (vectorised: 3× numba's scalar exp), the rest by two compiled loops."""
    gather, scatter = evaluator()
    v, c, off = np.ascontiguousarray(v), np.ascontiguousarray(c), np.ascontiguousarray(off)
    Kv = np.ascontiguousarray(v @ K)
    u, ex = gather(v, off, plan["f"], plan["sa"], plan["inv_vte"])
    np.exp(ex, out=ex)
    F, r, d = scatter(v, Kv, c, u, ex, plan["f"], plan["r_em1"], plan["d_e"], plan["e_em1"], plan["e_u"])
    return F, r, d, [u]


def _exponent_args(v, off, f, sa, inv_vte):
    """Branch voltages u = sa·v[:, f] + off and the exponents min(u / n·Vt, 700)."""
    B, m = off.shape
    u, x = np.empty((B, m)), np.empty((B, m))
    for s in range(B):
        for k in range(m):
            uk = sa[k] * v[s, f[k]] + off[s, k]
            u[s, k] = uk
            x[s, k] = min(uk * inv_vte, 700.0)
    return u, x


def _scatter(v, Kv, c, u, ex, f, r_em1, d_e, e_em1, e_u):
    """F = ½ v K v + c·v + the diodes' co-content, r = K v + c + I, d = dI/du, with
    I = IS·(e − 1), dI/du = IS/vte·e (the constants folded into the weights)."""
    B, n = v.shape
    m = len(f)
    F, r, d = np.empty(B), np.empty((B, n)), np.zeros((B, n))
    for s in range(B):
        acc = 0.0
        for p in range(n):
            r[s, p] = Kv[s, p] + c[s, p]
            acc += (0.5 * Kv[s, p] + c[s, p]) * v[s, p]
        for k in range(m):
            p = f[k]
            em1 = ex[s, k] - 1.0
            r[s, p] += em1 * r_em1[k]
            d[s, p] += ex[s, k] * d_e[k]
            acc += em1 * e_em1[k] + u[s, k] * e_u[k]
        F[s] = acc
    return F, r, d


def relaxer():
    """The compiled loops of `relax_sweeps`, or None without numba."""
    args, step = compiled("relax_args", _relax_args), compiled("relax_step", _relax_step)
    return None if args is None or step is None else (args, step)


def relax_sweeps(wB, held, Kd, f, sa, off, inv_vte, r_em1, d_e, sweeps, tol, max_step):
    """analog/relax.py's Newton sweeps on one independent set of nodes, in place on wB (B, nb):
    per sample, the devices there (local node f, one plain Shockley group) evaluated and the
    clipped step taken per node, until the sample's largest step is within tol (or, with no
    devices, a step was not clipped: then it is exact), at most `sweeps` times. Returns the
    most sweeps any sample took."""
    args, step = relaxer()
    active = np.ones(len(wB), np.bool_)
    for k in range(sweeps):
        ex = args(wB, off, f, sa, inv_vte)
        np.exp(ex, out=ex)
        if step(wB, held, Kd, f, ex, r_em1, d_e, tol, max_step, active) == 0:
            break
    return k + 1


def _relax_args(wB, off, f, sa, inv_vte):
    B, m = off.shape
    x = np.empty((B, m))
    for s in range(B):
        for j in range(m):
            x[s, j] = min((sa[j] * wB[s, f[j]] + off[s, j]) * inv_vte, 700.0)
    return x


def _relax_step(wB, held, Kd, f, ex, r_em1, d_e, tol, max_step, active):
    """One sweep on the active samples; a sample whose largest step is within tol (or, with no
    devices, not clipped) leaves `active`. Returns the samples still active."""
    B, nb = wB.shape
    m = len(f)
    dev_r, dB = np.empty(nb), np.empty(nb)
    left = 0
    for s in range(B):
        if not active[s]:
            continue
        dev_r[:] = 0.0
        dB[:] = 0.0
        for j in range(m):
            dev_r[f[j]] += (ex[s, j] - 1.0) * r_em1[j]
            dB[f[j]] += ex[s, j] * d_e[j]
        big, nan = 0.0, False
        for i in range(nb):
            step = -(Kd[i] * wB[s, i] + held[s, i] + dev_r[i]) / (Kd[i] + dB[i])
            if step > max_step:
                step = max_step
            elif step < -max_step:
                step = -max_step
            wB[s, i] += step
            if step != step:
                nan = True
            elif abs(step) > big:
                big = abs(step)
        if not nan and (big <= tol or not (m > 0 or big >= max_step)):
            active[s] = False
        else:
            left += 1
    return left
