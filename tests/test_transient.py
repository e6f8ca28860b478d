"""Transient simulation: node capacitances, native integrator against ngspice's `.tran` and
against the analytic RC response, the end state against the DC engine, the energy function
along the free dynamics, energy conservation, settling and bad input."""
import shutil

import numpy as np
import pytest

from analog.capacitance import CapacitanceSpec, node_capacitance, vary_capacitance
from analog.errors import AnalogInputError
from analog.hardware import program, resolve_hardware
from analog.inference_energy import EnergyProbe, measure_inferences, readout_tolerance, stored_energy
from analog.native import total_energy
from analog.transient import NativeTransient, TransientSpec
from tests.analog_circuits import block, inputs

needs_ngspice = pytest.mark.skipif(shutil.which("ngspice") is None, reason="ngspice not installed")
EVERYTHING = {"variation": {"is_sigma": 0.5, "vto_sigma": 0.05, "gain_sigma": 0.05, "offset_sigma": 0.01},
              "device": {"stuck_g_min": 0.05, "stuck_g_max": 0.05, "levels": 16}}


def test_node_capacitance_counts_the_cells_of_each_wire():
    m = block(features=3, hidden=(5,), outputs=2)      # 3 features: 6 inputs + 2 bias → 5 hidden; 5 + 2 → 4 out
    spec = CapacitanceSpec(wire_per_cell=0.2e-15, device_per_cell=0.1e-15, diode=1e-15, amplifier_input=10e-15)
    C = node_capacitance(m.circuit, spec)
    hidden = 8 * 0.3e-15 + 2 * 1e-15 + 10e-15         # a row of 8 cells, an up and a down diode, an amplifier
    out = 7 * 0.3e-15                                  # a row of 7 cells (the amplifier output drives the columns)
    np.testing.assert_allclose(C[:5], hidden, rtol=1e-12)
    np.testing.assert_allclose(C[5:], out, rtol=1e-12)
    varied = vary_capacitance(C, 0.2, seed=1)
    assert varied.shape == C.shape and np.abs(varied / C - 1).max() > 0.05 and np.all(varied > 0)


def test_rc_step_response_matches_the_exponential():
    """No hidden layer, no diodes: every output node is an RC to a fixed Thevenin source,
    v(t) = v∞ (1 − exp(−t/τ)) after a step; the midpoint rule at a fine step follows it."""
    m = block(features=2, hidden=(), outputs=1)
    c, G = m.circuit, m.conductances[0]
    x = np.array([[0.7, -0.4]])
    src0, src1 = c.source_voltages(np.zeros_like(x))[0], c.source_voltages(x)[0]
    g_tot = G.sum(1) + c.gmin
    tau = 1e-11
    C = tau * g_tot                                     # both nodes with the same time constant
    v0, v_inf = (G @ src0) / g_tot, (G @ src1) / g_tot
    spec = TransientSpec(duration=5 * tau, dt=tau / 200, rise=0.0, method="midpoint")
    res = NativeTransient(m.get_engine("native"), C, spec).run(m.conductances, src1[None], src0[None],
                                                                  keep_voltages=True)
    exact = v_inf + (v0 - v_inf) * np.exp(-res.times[:, None] / tau)
    assert np.abs(res.voltages[:, 0] - exact).max() < 1e-6 * np.abs(v_inf - v0).max()


def _replay(model_circuit, engine, G, C, src0, src1, rise, duration, dt):
    from analog.ngspice.transient import ngspice_transient
    waves = ngspice_transient(model_circuit, G, C, src0, src1, rise=rise, duration=duration, dt=dt)
    spec = TransientSpec(duration=duration, dt=dt, rise=rise)
    worst = 0.0
    for b, (t, V) in enumerate(waves):
        res = NativeTransient(engine, C, spec).run(G, src1[b:b + 1], src0[b:b + 1], times=t, keep_voltages=True)
        assert res.converged.all() and len(t) > 50
        worst = max(worst, np.abs(res.voltages[:, 0] - V).max())
    return worst


@needs_ngspice
def test_native_and_ngspice_waveforms_agree_with_diodes_conducting():
    m = block(features=3, hidden=(5,), outputs=2)
    c, eng, G = m.circuit, m.get_engine("native"), m.conductances
    x = inputs(2, 3)
    src1, src0 = c.source_voltages(x), c.source_voltages(np.zeros_like(x))
    dc = eng.solve(G, src=src1)
    V = c.terminal_voltages(dc.v, src1)
    I_d = np.concatenate([blk.device.current(blk.sign * (V[:, blk.node_terms] - V[:, [blk.ref_term]]))[0]
                          for blk in c.nonlinear], 1)
    assert (I_d > 1e-5).sum() >= 2                     # diodes conduct (crossbar rows carry ~1e-4 A)
    assert _replay(c, eng, G, node_capacitance(c), src0, src1, 1e-10, 1e-9, 1e-11) <= 1e-6


@needs_ngspice
def test_native_and_ngspice_waveforms_agree_on_a_chip_with_every_variation():
    m = block(hidden=(4,), vref=0.6)
    chip = program(m, resolve_hardware("pcm", EVERYTHING), seed=3)
    G = chip.conductances_at(3600.0)
    c = chip.circuit
    C = vary_capacitance(node_capacitance(c), 0.3, seed=4)      # per-node capacitance on the chip
    x = inputs(2, 3)
    src1, src0 = c.source_voltages(x), c.source_voltages(np.zeros_like(x))
    try:
        assert _replay(c, chip.engine("native"), G, C, src0, src1, 5e-11, 1e-9, 1e-11) <= 1e-6
    finally:
        chip.close()


def test_transient_ends_at_the_dc_operating_point_and_energy_decreases():
    m = block(features=3, hidden=(5,), outputs=2)
    c, eng, G = m.circuit, m.get_engine("native"), m.conductances
    x = inputs(6, 3, seed=2)
    src1 = c.source_voltages(x)
    rise = 1e-10
    res = NativeTransient(eng, node_capacitance(c), TransientSpec(duration=3e-9, dt=1e-11, rise=rise)).run(
        G, src1, keep_voltages=True)
    dc = eng.solve(G, src=src1)
    assert res.converged.all() and np.abs(res.v_final - dc.v).max() <= 1e-9
    after = res.times >= rise                          # sources held: the free dynamics
    T = int(after.sum())
    F = total_energy(c, G, res.voltages[after].reshape(-1, c.n_free),
                     np.broadcast_to(src1, (T,) + src1.shape).reshape(-1, c.n_sources)).reshape(T, -1)
    dF = np.diff(F, axis=0)
    assert (dF <= 1e-12 * np.abs(F[:-1])).all()
    assert (F[0] - F[-1] > 0).all()


@pytest.mark.parametrize("method", ["midpoint", "be"])
def test_energy_from_the_sources_is_dissipation_plus_stored_energy(method):
    """Tellegen's theorem, each term from its own computation: Σ V_s I_s of the sources
    (source currents) + amplifier ports = Σ G ΔV² + Σ I u + g_min V² (dissipated power) +
    Δ ½ C v² (node voltages); backward Euler adds its own artificial loss Σ ½ C Δv², reported."""
    m = block(features=3, hidden=(5,), outputs=2, vref=0.6)
    c, eng, G = m.circuit, m.get_engine("native"), m.conductances
    C = node_capacitance(c)
    x = inputs(3, 3, seed=5)
    spec = TransientSpec(duration=1.5e-9, dt=5e-12, rise=1e-10, method=method)
    probe = EnergyProbe(eng, G, C, method=method)
    res = NativeTransient(eng, C, spec).run(G, c.source_voltages(x), probe=probe, keep_voltages=True)
    cum = {k: v[-1] for k, v in probe.cumulative.items()}
    drawn = cum["sources"] + cum["amp_ports"]
    stored = stored_energy(C, res.voltages[-1]) - stored_energy(C, res.voltages[0])
    balance = cum["dissipated"] + stored + cum["numerical"]
    assert np.all(np.abs(drawn - balance) <= 1e-6 * np.abs(drawn))
    if method == "be":
        assert np.all(cum["numerical"] < 1e-3 * drawn)


def test_settling_time_energy_and_unsettled_samples_are_counted():
    m = block(features=3, hidden=(5,), outputs=2)
    c, eng, G = m.circuit, m.get_engine("native"), m.conductances
    C = node_capacitance(c)
    src = c.source_voltages(inputs(5, 3, seed=3))
    tol = readout_tolerance(8, 2.0)
    assert tol == pytest.approx(2.0 / 256 / 2)
    ok = measure_inferences(eng, G, C, src, spec=TransientSpec(duration=3e-9, dt=5e-12, rise=1e-10), tol=tol)
    assert ok["settled"].all() and np.all(ok["settle_time"] > 0) and np.all(ok["energy"] > 0)
    # the outputs' own record: after the settling time every output stays within tol of the DC value
    res = NativeTransient(eng, C, TransientSpec(duration=3e-9, dt=5e-12, rise=1e-10)).run(G, src)
    y_dc = c.outputs(eng.solve(G, src=src).v)
    for b in range(len(src)):
        late = res.times >= ok["settle_time"][b]
        assert np.abs(res.outputs[late, b] - y_dc[b]).max() <= tol
        assert np.abs(res.outputs[~late, b] - y_dc[b]).max() > tol or ok["settle_time"][b] == res.times[1]
    short = measure_inferences(eng, G, C, src, spec=TransientSpec(duration=2e-11, dt=5e-12, rise=1e-10), tol=tol)
    assert not short["settled"].any() and np.isnan(short["settle_time"]).all() and np.isnan(short["energy"]).all()


def test_bad_transient_input_names_the_key():
    m = block(features=2, hidden=(3,), outputs=1)
    with pytest.raises(AnalogInputError, match="capacitance.wire_per_cell"):
        CapacitanceSpec(wire_per_cell=-1e-15)
    with pytest.raises(AnalogInputError, match="capacitance: node 0"):
        NativeTransient(m.get_engine("native"), np.zeros(m.circuit.n_free))
    with pytest.raises(AnalogInputError, match="transient.dt"):
        TransientSpec(duration=1e-9, dt=1e-9)
    with pytest.raises(AnalogInputError, match="transient.duration"):
        TransientSpec(duration=0.0)
    with pytest.raises(AnalogInputError, match="transient.readout_bits"):
        readout_tolerance(0, 2.0)


def test_the_inference_power_shortcut_equals_the_engine_source_currents():
    """InferencePower (precomputed crossbar products along the input ramp) against Σ V_s I_s
    from the engine's source currents and the amplifier currents from the crossbar currents."""
    from analog.inference_energy import InferencePower, power_terms
    from analog.transient import ramp
    m = block(features=3, hidden=(5,), outputs=2, vref=0.6)
    c, eng, G = m.circuit, m.get_engine("native"), m.conductances
    rng = np.random.default_rng(0)
    s0, s1 = c.source_voltages(inputs(4, 3, seed=1)), c.source_voltages(inputs(4, 3, seed=2))
    power = InferencePower(eng, G, s0, s1, rise=1e-10)
    for t in (0.0, 3e-11, 2e-10):
        v = rng.uniform(-0.5, 1.5, (4, c.n_free))
        p_src, i_amp = power(v, t)
        ref = power_terms(eng, G, v, ramp(s0, s1, t, 1e-10))
        np.testing.assert_allclose(p_src, ref["sources"], rtol=1e-10, atol=1e-18)
        np.testing.assert_allclose(i_amp, ref["amp_current"], rtol=1e-10, atol=1e-18)
