"""The native engine's training shortcuts, checked against what they stand for: the nudged
phases' predictor against converged nudged solves, and a solution's lazily computed power
and source currents against the branch formulas on the conductances it was solved with."""
import numpy as np

from analog.devices import ShockleyDiode
from analog.native import NativeEngine
from tests.analog_circuits import block, inputs


def test_linear_response_is_the_first_order_change_under_a_nudge():
    """v(±I) − v0 ∓ Δv is second order in I: halving I divides it by about 4, and the
    symmetric difference (v(+I) − v(−I))/2 matches Δv to third order."""
    m = block(hidden=(6,), device=ShockleyDiode(IS=1e-12))
    c, G = m.circuit, m.conductances
    eng = NativeEngine(c, tol_v=1e-13)
    x = inputs(8, 3)
    free = eng.solve(G, x)
    direction = np.random.default_rng(2).normal(0, 1.0, (8, c.n_outputs))
    errors = []
    for amp in (2e-6, 1e-6):
        I = amp * direction
        dv = eng.linear_response(G, free.v, free.src, I)
        plus = eng.solve(G, src=free.src, nudge=I, v0=free.v)
        minus = eng.solve(G, src=free.src, nudge=-I, v0=free.v)
        assert plus.converged.all() and minus.converged.all()
        errors.append(np.abs(plus.v - free.v - dv).max())
        sym = np.abs(0.5 * (plus.v - minus.v) - dv).max()
        assert sym < 1e-2 * errors[-1] + 1e-12, (sym, errors[-1])
        assert errors[-1] < 1e-2 * np.abs(dv).max()
    assert 3.0 < errors[0] / errors[1] < 5.0, errors


def test_lazy_power_and_currents_use_the_solved_conductances():
    """Power and source currents read after the conductances changed in place are those of
    the conductances the solve saw: Σ G·ΔV² + Σ I·u + gmin·v², and KCL at each source."""
    m = block(hidden=(5,), device=ShockleyDiode(IS=1e-12))
    c = m.circuit
    G = [g.copy() for g in m.conductances]
    eng = NativeEngine(c)
    s = eng.solve(G, inputs(6, 3))
    solved = [g.copy() for g in G]
    for g in G:
        g *= 1.7                      # a training update after the solve
    V = c.terminal_voltages(s.v, s.src)
    power = c.gmin * (s.v ** 2).sum(1)
    currents = np.zeros_like(s.src)
    for blk, g in zip(c.dense, solved):
        drop = V[:, blk.out_terms][:, :, None] - V[:, blk.in_terms][:, None, :]
        power += (g * drop ** 2).sum((1, 2))
        src_cols = c.is_source_term(blk.in_terms)
        currents[:, blk.in_terms[src_cols] - c.n_free] -= (g * drop).sum(1)[:, src_cols]
    for blk in c.nonlinear:
        u = blk.sign * (V[:, blk.node_terms] - V[:, [blk.ref_term]])
        i = 1e-12 * np.expm1(u / blk.device.vte)
        power += (i * u).sum(1)
        currents[:, blk.ref_term - c.n_free] -= blk.sign * i.sum(1)
    np.testing.assert_allclose(s.power, power, rtol=1e-9, atol=1e-18)
    np.testing.assert_allclose(s.source_currents, currents, rtol=1e-7, atol=1e-15)
