"""The derived amplifier and sample-and-hold figures (analog/amplifier_design.py): the formulas
against hand arithmetic with the SI constants, the loads counted cell by cell, the derived bias
inside an inference's energy, the config's `derived`, and the ideal-amplifier approximation
checked with ngspice: single-pole amplifiers at the derived g_m change the settling time by at
most the design's fraction of it."""
import shutil

import numpy as np
import pytest

from analog.amplifier_design import AmplifierDesign, reference_settling
from analog.capacitance import CapacitanceSpec, amplifier_load, node_capacitance
from analog.energy_figures import FIGURES
from analog.errors import AnalogInputError
from analog.inference_energy import AmplifierSupply, measure_inferences, readout_tolerance, settling_index
from analog.transient import TransientSpec
from tests.analog_circuits import block, inputs

needs_ngspice = pytest.mark.skipif(shutil.which("ngspice") is None, reason="ngspice not installed")


def test_formulas_against_hand_arithmetic():
    d = AmplifierDesign(time_ratio=0.1, slope=1.4, temperature=300.0, branches=2.0, hold_bits=8, hold_range=2.0)
    ut = 1.380649e-23 * 300 / 1.602176634e-19
    assert ut == pytest.approx(0.025852, rel=1e-4) and d.thermal_voltage == pytest.approx(ut, rel=1e-15)
    # 6 fF settled in 75 ps: tau_a = 7.5 ps, g_m = 0.8 mS, I = 2 * 1.4 * 25.852 mV * 0.8 mS = 57.9 uA
    assert d.transconductance(6e-15, 75e-12) == pytest.approx(0.8e-3)
    assert d.bias(6e-15, 75e-12) == pytest.approx(57.9e-6, rel=1e-3)
    # 8 bits over 2 V: LSB 7.8125 mV, kT/C = LSB^2/12 -> C = 4.14e-21 / 5.086e-6 = 0.814 fF
    lsb = 2.0 / 256
    assert d.hold_capacitance() == pytest.approx(1.380649e-23 * 300 / (lsb ** 2 / 12), rel=1e-12)
    assert d.hold_capacitance() == pytest.approx(0.8143e-15, rel=1e-3)
    # acquisition: two 7.5 ps time constants to half an LSB, ln(512) * 15 ps = 93.6 ps
    assert d.acquire_time(75e-12) == pytest.approx(np.log(512) * 15e-12)
    assert d.hold_bias(75e-12) == pytest.approx(2 * 1.4 * ut * d.hold_capacitance() / 7.5e-12)
    # the recorded FIGURES are the main job's block at its measured 75 ps and 20-row columns
    load = 20 * (0.2e-15 + 0.1e-15)
    assert FIGURES["amplifier_bias"].value == pytest.approx(AmplifierDesign().bias(load, 75e-12), rel=1e-3)
    assert FIGURES["sample_hold_bias"].value == pytest.approx(AmplifierDesign().hold_bias(75e-12), rel=1e-3)
    assert FIGURES["sample_hold_acquire"].value == pytest.approx(AmplifierDesign().acquire_time(75e-12), rel=1e-3)
    assert FIGURES["sample_hold_capacitance"].value == pytest.approx(d.hold_capacitance(), rel=1e-3)
    for bad in (dict(time_ratio=0.0), dict(slope=-1.0), dict(hold_bits=0)):
        with pytest.raises(AnalogInputError, match="transient.amplifier_"):
            AmplifierDesign(**bad)
    assert np.isnan(reference_settling([np.nan])) and reference_settling([3.0, np.nan, 1.0, 2.0]) == 2.0


def test_amplifier_load_counts_the_columns_it_drives():
    m = block(features=3, hidden=(5,), outputs=2)       # each amplifier drives one column of 2 x 2 output rows
    spec = CapacitanceSpec(wire_per_cell=0.2e-15, device_per_cell=0.1e-15, diode=1e-15, amplifier_input=10e-15)
    np.testing.assert_allclose(amplifier_load(m.circuit, spec), np.full(5, 4 * 0.3e-15), rtol=1e-12)
    assert len(amplifier_load(block(hidden=()).circuit)) == 0


def test_derived_bias_enters_the_inference_energy():
    m = block(features=3, hidden=(5,), outputs=2)
    c, eng, G = m.circuit, m.get_engine("native"), m.conductances
    src = c.source_voltages(inputs(6, 3, seed=1))
    C, spec = node_capacitance(c), TransientSpec(duration=1e-9, dt=5e-12, rise=1e-11)
    zero = measure_inferences(eng, G, C, src, spec=spec, supply=AmplifierSupply(bias_a=0.0))
    derived = measure_inferences(eng, G, C, src, spec=spec, supply=AmplifierSupply(bias_a=None))
    assert zero["settled"].all()
    t_ref = np.median(zero["settle_time"])
    expect = 2 * 1.4 * (1.380649e-23 * 300 / 1.602176634e-19) * 1.2e-15 / (0.1 * t_ref)
    assert derived["amplifier_bias"] == pytest.approx(expect, rel=1e-9)
    extra = derived["energy_amplifiers"] - zero["energy_amplifiers"]
    np.testing.assert_allclose(extra, 1.2 * 5 * expect * zero["settle_time"], rtol=1e-9)
    with pytest.raises(AnalogInputError, match="transient.amplifier_bias"):
        AmplifierSupply(bias_a=None).bias()


def test_config_takes_a_number_or_derived():
    from pipeline.config import validate_config
    from pipeline.config.errors import ConfigError
    ok = validate_config({"name": "t", "transient": {"amplifier_bias": 2e-6}})
    assert ok.transient.amplifier_bias == 2e-6
    assert validate_config({"name": "t", "transient": {}}).transient.amplifier_bias == "derived"
    for bad in (0, -1e-6, "fast", True):
        with pytest.raises(ConfigError, match=r"transient\.amplifier_bias: .* allowed: a number > 0 or derived"):
            validate_config({"name": "t", "transient": {"amplifier_bias": bad}})


def _settling(c, waves, final, tol):
    out = []
    for (t, V), y_end in zip(waves, final):
        n = c.n_outputs
        k, settled = settling_index((V[:, :n] - V[:, n:])[:, None], y_end[None], tol)
        assert settled.all()
        out.append(t[k[0]])
    return np.array(out), max(np.diff(t).max() for t, _ in waves)


@needs_ngspice
def test_single_pole_amplifiers_change_the_settling_by_at_most_the_design_fraction():
    """ngspice .tran of the same block twice: ideal amplifiers (VCVS), and single-pole ones at
    the derived g_m = C_L / (r t_ref) (t_ref: the ideal runs' median settling); every sample's
    settling may grow by at most r t_ref (one output grid step of slack). With r ten times
    larger the delay exceeds that bound, so the check can fail."""
    from analog.ngspice.transient import ngspice_transient
    m = block(features=3, hidden=(5,), outputs=2)
    c, eng, G = m.circuit, m.get_engine("native"), m.conductances
    x = inputs(6, 3, seed=5)
    src1, src0 = c.source_voltages(x), c.source_voltages(np.zeros_like(x))
    C, load = node_capacitance(c), amplifier_load(c)
    final, tol = c.outputs(eng.solve(G, src=src1).v), readout_tolerance(8, 2.0)
    nodes = list(c.out_plus) + list(c.out_minus)
    kw = dict(rise=1e-11, duration=1.5e-9, dt=1e-12, nodes=nodes)
    ideal, step = _settling(c, ngspice_transient(c, G, C, src0, src1, **kw), final, tol)
    t_ref = reference_settling(ideal)
    for r, within in ((0.1, True), (1.0, False)):
        gm = AmplifierDesign(time_ratio=r).transconductance(load, t_ref)
        pole, step2 = _settling(c, ngspice_transient(c, G, C, src0, src1, amp_pole=(gm, load), **kw), final, tol)
        delay = pole - ideal
        bound = 0.1 * t_ref + max(step, step2)
        assert bool(delay.max() <= bound) is within, (r, delay / t_ref)
        print(f"r={r}: t_ref {t_ref * 1e12:.1f} ps, delay / t_ref {np.round(delay / t_ref, 4)}")
        assert delay.max() > 0.0            # the pole does delay the outputs
