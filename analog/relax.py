"""Block relaxation of the native engine's Newton iteration (analog/newton.py): from V_ref,
after the first Newton step, F is minimised over one independent set of free nodes at a
time, the others held. K has no couplings inside such a set, so that is one convex
problem in one unknown per node, solved by Newton steps on all of them at once that
evaluate only the devices on those nodes. A layered block (locally connected → dense →
outputs) splits into two such sets, the eliminated nodes E and the kept ones R, so the
relaxation alternates E, R, E, … (block coordinate descent on a convex F); Newton then
starts close enough to its quadratic convergence to save two to four iterations.

With wire resistance a set's nodes couple weakly (`schur.weak_coupling`): those couplings
are held at the state before each half-sweep (a Jacobi step over them, not an exact
minimisation, so F need not go down at every half-sweep); the final test below keeps a
sample's relaxed state only where F went down."""
from __future__ import annotations

import copy

import numpy as np

from . import fused
from .schur import as_slice

#: the eliminated nodes' relaxation: sweeps at most, the step (V) that ends it, the largest step
#: (a start for Newton, not a solution: 1 mV is close enough for Newton's quadratic convergence)
RELAX_SWEEPS, RELAX_TOL, RELAX_MAX_STEP = 12, 1e-3, 0.05
#: half-sweeps (E, R, E, …) of the relaxation where R is an independent set too
RELAX_BLOCKS = 5


def relax_eliminated(evaluate, schur, v, F, r, d, us):
    """Minimise F over the eliminated nodes E alone, the others held: K_EE is diagonal, so
    that is one convex problem in one unknown per node, solved by Newton steps on all of
    them at once (each clipped to RELAX_MAX_STEP volts; a sweep evaluates the devices only,
    the linear part of E's residual moves with v_E alone). Where the kept nodes R are an
    independent set too (a layered block: locally connected → dense → outputs), the same
    on R, then E again, RELAX_BLOCKS half-sweeps in all (block coordinate descent: F goes
    down at every half-sweep; where the sets have weak couplings, held per half-sweep, that
    is not guaranteed). A sample keeps the result where F went down, else its state is
    unchanged. After the first Newton step from V_ref this carries the hidden nodes
    through their diodes' knee, where Newton on the whole system spends several
    iterations (the Fashion block: at most 4 Newton iterations per sample instead of 8;
    the Fashion pixel blocks part-trained, mean 4.7 instead of 7.5 (LC) and 3.0 instead
    of 5.8 (dense) with the alternation, against E alone)."""
    E, R = schur.E_index, schur.R_index
    # per block: its nodes, K's diagonal there, the other block and K from it, and the block's
    # own weak couplings (wire resistance; None: K_EE, K_RR diagonal), held at the current state
    own_E, own_R = getattr(schur, "EE_coupling", None), getattr(schur, "RR_coupling", None)
    blocks = [(E, schur.KEE, R, schur.KRE, own_E)]
    if (schur.R_independent or own_R is not None) and len(schur.R):
        blocks = [blocks[0], (R, schur.KRR_diag, E, schur.KER, own_R)] * (RELAX_BLOCKS // 2) + \
            blocks[:RELAX_BLOCKS % 2]
    w = v.copy()
    for idx, Kd, other, K_other, own in blocks:
        # what the sources, the injected currents and the held block put into this one's residual
        held = evaluate.c[:, idx] + (w[:, other] @ K_other if len(schur.R) else 0.0)
        if own is not None:
            held = held + w[:, idx] @ own
        if _relax_block(evaluate, idx, Kd, w, held) == 1 and idx is not E:
            break     # the first step on R already within RELAX_TOL: E would barely move
    Fw, rw, dw, uw = evaluate(w)
    better = Fw <= F
    if better.all():
        return w, Fw, rw, dw, uw
    keep = ~better
    w[keep], Fw[keep], rw[keep], dw[keep] = v[keep], F[keep], r[keep], d[keep]
    for u_w, u in zip(uw, us):
        u_w[keep] = u[keep]
    return w, Fw, rw, dw, uw


def _relax_block(evaluate, idx, Kd, w, held) -> int:
    """Newton steps, in place on w, on the nodes `idx` (K's block there taken as its diagonal
    Kd), the rest held (`held`: the residual's part that does not move with them, including
    any weak couplings among these nodes at their state before the sweep); only the devices
    on those nodes are evaluated. Returns the steps taken."""
    sweeps = _compiled_sweeps(evaluate, idx, Kd, w, held)
    if sweeps is not None:
        return sweeps
    devices = _block_devices(evaluate, idx, w)
    wB = w[:, idx]
    for k in range(RELAX_SWEEPS):
        dev_r, dB = devices(wB)
        step = np.clip(-(Kd * wB + held + dev_r) / (Kd + dB), -RELAX_MAX_STEP, RELAX_MAX_STEP)
        wB += step
        if np.abs(step).max() <= RELAX_TOL or not (devices.any or np.abs(step).max() >= RELAX_MAX_STEP):
            break     # (no devices there: an unclipped step is exact)
    w[:, idx] = wB
    return k + 1


def _compiled_sweeps(evaluate, idx, Kd, w, held):
    """_relax_block's sweeps by analog/fused.py's compiled loop, where the devices on the nodes
    idx are one group of plain Shockley diodes (or none); None where it does not apply."""
    stack = evaluate.stack
    sub, picks = restricted(stack, idx, w.shape[1])
    if fused.relaxer() is None or sub is None or len(sub.groups) > 1 or (sub.groups and not sub.groups[0]["plain"]):
        return None
    wB = np.ascontiguousarray(w[:, idx])
    if sub.groups:
        g, (i, cols) = sub.groups[0], picks[0]
        args = (g["f"].astype(np.int64), g["sa"], np.ascontiguousarray(evaluate.offs[i][:, cols]),
                float(g["inv_vte"]), g["r_em1"], g["d_e"])
    else:
        args = (np.zeros(0, np.int64), np.zeros(0), np.zeros((len(w), 0)), 1.0, np.zeros(0), np.zeros(0))
    held = np.ascontiguousarray(np.broadcast_to(held, wB.shape))
    Kd = np.ascontiguousarray(Kd, dtype=float)
    sweeps = fused.relax_sweeps(wB, held, Kd, *args, RELAX_SWEEPS, RELAX_TOL, RELAX_MAX_STEP)
    w[:, idx] = wB
    return sweeps


def _block_devices(evaluate, idx, w):
    """wB ↦ the devices' residual and Hessian diagonal on the nodes idx at those nodes'
    voltages wB (the rest of w held): from the devices there alone, or, where a layer of
    devices with per-element parameters straddles the block, from all of them."""
    stack = evaluate.stack
    sub, picks = restricted(stack, idx, w.shape[1])
    if sub is None:
        def devices(wB):
            w[:, idx] = wB
            dev_r, dev_d = np.zeros_like(w), np.zeros_like(w)
            stack.add_to(dev_r, dev_d, stack.branch(w, evaluate.offs), energy=False)
            return dev_r[:, idx], dev_d[:, idx]
        devices.any = bool(stack.groups)
        return devices
    offs = [evaluate.offs[i][:, cols] for i, cols in picks]

    def devices(wB):
        dev_r, dev_d = np.zeros_like(wB), np.zeros_like(wB)
        sub.add_to(dev_r, dev_d, sub.branch(wB, offs), energy=False)
        return dev_r, dev_d
    devices.any = bool(sub.groups)
    return devices


def restricted(stack, idx, n_free: int):
    """The devices on the free nodes `idx` (a slice or indices, of n_free) alone, as a
    stack over those nodes (numbered by their position in idx), and per kept group (its
    index, the positions of its kept devices): a relaxation of one independent set of
    nodes evaluates only the devices there (built once per node set). (None, None) where a
    layer of devices with per-element parameters has devices both on and off the nodes."""
    key = (idx.start, idx.stop) if isinstance(idx, slice) else idx.tobytes()
    cache = stack.__dict__.setdefault("_restricted", {})
    if key not in cache:
        nodes = np.arange(n_free)[idx]
        local = np.full(n_free, -1)
        local[nodes] = np.arange(len(nodes))
        sub, picks = copy.copy(stack), []
        sub.groups, sub._restricted = [], {}
        for i, g in enumerate(stack.groups):
            keep = local[g["f"]] >= 0
            if g["device"].size is not None and keep.any() and not keep.all():
                sub, picks = None, None     # per-element parameters cannot be cut here
                break
            if keep.any():
                sub.groups.append(_restrict_group(g, keep, local))
                picks.append((i, np.flatnonzero(keep)))
        if sub is not None:
            sub.limiting = [i for i, g in enumerate(sub.groups) if g["limit"]]
        cache[key] = (sub, picks)
    return cache[key]


def _restrict_group(g: dict, keep: np.ndarray, local: np.ndarray) -> dict:
    """A device group cut to its devices `keep`, its nodes renumbered by `local`."""
    n = len(g["f"])
    h = {k: (val[keep] if isinstance(val, np.ndarray) and val.shape == (n,) else val) for k, val in g.items()}
    h["f"], h["parts"], pos = local[g["f"][keep]], [], 0
    for sl, _ in g["parts"]:
        m = keep[sl]
        if m.any():
            h["parts"].append((slice(pos, pos + int(m.sum())), as_slice(local[g["f"][sl][m]])))
            pos += int(m.sum())
    h.pop("gather", None)
    if all(isinstance(fp, slice) for _, fp in h["parts"]):
        h["gather"] = [fp for _, fp in h["parts"]]
    return h
