import numpy as np
import pytest

import analog.layers as L
from analog.devices import ShockleyDiode
from analog.native import NativeEngine, total_energy
from tests.analog_circuits import DEVICES, block, inputs


@pytest.mark.parametrize("device", list(DEVICES))
@pytest.mark.parametrize("vref", [0.0, 0.6])
def test_operating_point_satisfies_kcl(device, vref):
    m = block(hidden=(6, 4), device=DEVICES[device], vref=vref)
    eng = NativeEngine(m.circuit)
    x = inputs(40, 3)
    s = eng.solve(m.conductances, x)
    assert s.converged.all()
    r = eng.residual(m.conductances, s.v, s.src) / m.circuit.free_scale  # amperes
    assert np.abs(r).max() < 1e-15
    # some diodes conduct: at least one hidden node is clamped near the bias
    u = [blk.sign * (m.circuit.terminal_voltages(s.v, s.src)[:, blk.node_terms] - s.src[:, [blk.ref_term - m.circuit.n_free]])
         for blk in m.circuit.nonlinear]
    assert max(np.max(x) for x in u) > 0.2


def test_operating_point_is_energy_minimum():
    m = block(hidden=(8,), device=DEVICES["shockley_rs"])
    s = m.solve(inputs(20, 3))
    e0 = m.energy(s)
    rng = np.random.default_rng(1)
    for scale in (1e-4, 1e-2, 0.3):
        for _ in range(5):
            moved = type(s)(**{**s.__dict__, "v": s.v + rng.normal(0, scale, s.v.shape)})
            assert np.all(m.energy(moved) > e0)


def test_energy_derivative_wrt_conductance_is_half_squared_drop():
    m = block(hidden=(5,))
    s = m.solve(inputs(3, 3))
    c, G = m.circuit, [g.copy() for g in m.conductances]
    V = c.terminal_voltages(s.v, s.src)
    for k, blk in enumerate(c.dense):
        i, j = 1, 2
        h = 1e-3 * G[k][i, j]
        Gp = [g.copy() for g in G]; Gp[k][i, j] += h
        Gm = [g.copy() for g in G]; Gm[k][i, j] -= h
        dE = (total_energy(c, Gp, s.v, s.src) - total_energy(c, Gm, s.v, s.src)) / (2 * h)
        expected = blk.scale * 0.5 * (V[:, blk.out_terms[i]] - V[:, blk.in_terms[j]]) ** 2
        np.testing.assert_allclose(dE, expected, rtol=1e-6)


def test_energy_at_the_operating_point_changes_by_half_squared_drop():
    """Envelope theorem: E*(G) = E(v*(G), G) with v* re-solved for every G has dE*/dG = ½ΔV²
    only if v* is the stationary point of this very energy (the engine's KCL and the energy
    agree); a solver of different equations would add a term ∂E/∂v · dv*/dG."""
    m = block(hidden=(5,))
    x = inputs(3, 3)
    eng = m.get_engine("native")
    c, G = m.circuit, [g.copy() for g in m.conductances]
    s = eng.solve(G, x)
    V = c.terminal_voltages(s.v, s.src)
    for k, blk in enumerate(c.dense):
        i, j = 0, 1
        h = 1e-3 * G[k][i, j]
        Gp = [g.copy() for g in G]; Gp[k][i, j] += h
        Gm = [g.copy() for g in G]; Gm[k][i, j] -= h
        sp, sm = eng.solve(Gp, x), eng.solve(Gm, x)
        dE = (total_energy(c, Gp, sp.v, sp.src) - total_energy(c, Gm, sm.v, sm.src)) / (2 * h)
        expected = blk.scale * 0.5 * (V[:, blk.out_terms[i]] - V[:, blk.in_terms[j]]) ** 2
        np.testing.assert_allclose(dE, expected, rtol=1e-5)


def test_nudged_phase_warm_start_and_currents():
    m = block(hidden=(5,))
    x = inputs(10, 3)
    free = m.solve(x)
    I = np.full((10, m.circuit.n_outputs), 1e-6)
    cold = m.solve(x, nudge=I)
    warm = m.solve(x, nudge=I, v0=free.v)
    np.testing.assert_allclose(warm.v, cold.v, atol=1e-9)
    assert warm.iterations.mean() <= cold.iterations.mean()
    # injected current raises V⁺ and lowers V⁻
    dy = m.circuit.outputs(cold.v) - m.circuit.outputs(free.v)
    assert np.all(dy > 0)
    # charge conservation: sources + nudging deliver what the amplifiers' supply and gmin don't
    assert np.isfinite(free.source_currents).all() and (free.power > 0).all()


def test_non_convergence_is_reported_not_hidden():
    m = block(hidden=(5,), device=ShockleyDiode())
    eng = NativeEngine(m.circuit, max_iter=2)
    s = eng.solve(m.conductances, inputs(8, 3, scale=3.0))
    assert (~s.converged).any()
    bad = s.failed
    assert np.isnan(s.v[bad]).all() and list(bad) == s.info["failures"]
    with pytest.raises(Exception, match="did not converge"):
        s.raise_on_failure("native")


def test_power_is_sum_of_element_dissipation_for_linear_network():
    x = L.InputVoltage(2)
    y = L.CurrentLayer()(L.Dense(2, g_min=1e-5, g_max=1e-5)(x))
    from analog.model import AnalogModel
    m = AnalogModel(x, y, gmin=0.0)
    s = m.solve(np.array([[1.0, 0.0]]))
    # each output node sits at the mean of (+1, 0, −1, 0)... by symmetry V = 0; P = Σ G V²
    np.testing.assert_allclose(s.v, 0.0, atol=1e-12)
    np.testing.assert_allclose(s.power, 2 * 1e-5 * (1 + 1), rtol=1e-12)
    # sources deliver that power
    np.testing.assert_allclose((s.source_currents * s.src).sum(1), s.power, rtol=1e-12)


@pytest.mark.parametrize("make, message", [
    (lambda: L.Dense(3, g_min=0.0), "g_min"),
    (lambda: L.Dense(3, g_min=2e-5, g_max=1e-5), "g_min"),
    (lambda: L.Amplification(gain=-1), "gain"),
    (lambda: L.DiodeLayer("sideways"), "direction"),
    (lambda: L.DiodeLayer("up", device=ShockleyDiode(IS=-1.0)), "IS"),
])
def test_bad_parameters_name_the_problem(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_layer_wired_to_wrong_shape_is_named():
    dense = L.Dense(3, name="hidden_crossbar")
    dense(L.InputVoltage(2))
    with pytest.raises(ValueError, match="hidden_crossbar.*4.*6"):
        dense(L.InputVoltage(3))


def test_non_finite_input_is_rejected_before_solving():
    m = block()
    x = inputs(4, 3)
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match="sample 2"):
        m.solve(x)
    with pytest.raises(ValueError, match="shape"):
        m.solve(inputs(4, 5))
