"""One compiled pass for the Newton iteration's evaluation of a layered block (analog/newton.py):
F, its gradient r, the Hessian diagonal d and the branch voltages at a batch of states, where
K is multiplied by its (E, R) blocks (K_EE diagonal: the locally connected block, whose 358
eliminated nodes all couple to its 32 dense-layer nodes) and every device is a plain Shockley
diode.

numpy evaluates this as some twenty calls per trial point, each a pass over (B, n) or
(B, n_devices) arrays: the K product by blocks, gathers of the branch voltages, the
exponentials, scatters of currents and conductances onto the nodes, the energy's products.
Here each sample is one loop over the K blocks and one over the devices, in float64 with
IEEE rounding (no fast-math): the same sums in another order (results equal to rounding).

Compiled on first use (about a second, then cached on disk by numba); without numba,
`evaluator()` is None and newton.py keeps its numpy path."""
from __future__ import annotations

import numpy as np

_COMPILED: dict = {}


def evaluator():
    """The compiled kernel (see `_evaluate`), or None without numba."""
    if "eval" not in _COMPILED:
        try:
            import numba
        except ImportError:
            _COMPILED["eval"] = None
        else:
            _COMPILED["eval"] = numba.njit(cache=True, nogil=True)(_evaluate)
    return _COMPILED["eval"]


def fused_plan(s, stack):
    """The arrays the kernel needs for this Schur solver's partition and device stack, or None
    where it does not apply (eliminated nodes that couple, no kept nodes, or devices other
    than one group of plain Shockley diodes)."""
    if not s.exact or not len(s.R) or len(stack.groups) != 1 or evaluator() is None:
        return None
    g = stack.groups[0]
    if not g["plain"]:
        return None
    E, R = np.arange(len(s.KEE) + len(s.KRR))[s.E_index], np.arange(len(s.KEE) + len(s.KRR))[s.R_index]
    c = np.ascontiguousarray
    return (c(s.KEE), c(s.KRE), c(s.KER), c(s.KRR), E.astype(np.int64), R.astype(np.int64),
            c(g["f"].astype(np.int64)), c(g["sa"]), float(g["inv_vte"]), c(g["r_em1"]), c(g["d_e"]),
            c(g["e_em1"]), c(g["e_u"]))


def evaluate(plan, v, c, off):
    """(F, r, d, [u]) at states v (B, n) for the affine residual part c (B, n) and the devices'
    branch-voltage offsets off (B, n_devices), by the compiled kernel."""
    F, r, d, u = evaluator()(np.ascontiguousarray(v), np.ascontiguousarray(c), np.ascontiguousarray(off), *plan)
    return F, r, d, [u]


def _evaluate(v, c, off, KEE, KRE, KER, KRR, E, R, f, sa, inv_vte, r_em1, d_e, e_em1, e_u):
    B, n = v.shape
    nE, nR, m = len(E), len(R), len(f)
    F, r, d, u = np.empty(B), np.empty((B, n)), np.zeros((B, n)), np.empty((B, m))
    vE, vR, kE, kR = np.empty(nE), np.empty(nR), np.empty(nE), np.empty(nR)
    for s in range(B):
        for i in range(nE):
            vE[i] = v[s, E[i]]
            kE[i] = KEE[i] * vE[i]
        for j in range(nR):
            vR[j] = v[s, R[j]]
            kR[j] = 0.0
        for j in range(nR):                 # v_R K_RE and v_R K_RR, row by row (contiguous)
            x = vR[j]
            for i in range(nE):
                kE[i] += x * KRE[j, i]
            for k in range(nR):
                kR[k] += x * KRR[j, k]
        for i in range(nE):                 # v_E K_ER
            x = vE[i]
            for k in range(nR):
                kR[k] += x * KER[i, k]
        quad = 0.0
        for i in range(nE):
            p = E[i]
            r[s, p] = kE[i] + c[s, p]
            quad += (0.5 * kE[i] + c[s, p]) * vE[i]
        for j in range(nR):
            p = R[j]
            r[s, p] = kR[j] + c[s, p]
            quad += (0.5 * kR[j] + c[s, p]) * vR[j]
        energy = 0.0
        for k in range(m):                  # the diodes: I = IS·(e − 1), dI/du = IS/vte·e
            p = f[k]
            uk = sa[k] * v[s, p] + off[s, k]
            u[s, k] = uk
            ex = np.exp(min(uk * inv_vte, 700.0))
            em1 = ex - 1.0
            r[s, p] += em1 * r_em1[k]
            d[s, p] += ex * d_e[k]
            energy += em1 * e_em1[k] + uk * e_u[k]
        F[s] = quad + energy
    return F, r, d, u


def relaxer():
    """The compiled relaxation sweeps (see `_relax_sweeps`), or None without numba."""
    if "relax" not in _COMPILED:
        try:
            import numba
        except ImportError:
            _COMPILED["relax"] = None
        else:
            _COMPILED["relax"] = numba.njit(cache=True, nogil=True)(_relax_sweeps)
    return _COMPILED["relax"]


def _relax_sweeps(wB, held, Kd, f, sa, off, inv_vte, r_em1, d_e, sweeps, tol, max_step):
    """analog/relax.py's Newton sweeps on one independent set of nodes, in place on wB (B, nb):
    per sample, the devices there (local node f, one plain Shockley group) evaluated and the
    clipped step taken per node, until the sample's largest step is within tol (or, with no
    devices, a step was not clipped: then it is exact), at most `sweeps` times. Returns the
    most sweeps any sample took."""
    B, nb = wB.shape
    m = len(f)
    dev_r, dB = np.empty(nb), np.empty(nb)
    most = 0
    for s in range(B):
        for k in range(sweeps):
            dev_r[:] = 0.0
            dB[:] = 0.0
            for j in range(m):
                p = f[j]
                ex = np.exp(min((sa[j] * wB[s, p] + off[s, j]) * inv_vte, 700.0))
                dev_r[p] += (ex - 1.0) * r_em1[j]
                dB[p] += ex * d_e[j]
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
                break
        most = max(most, k + 1)
    return most
