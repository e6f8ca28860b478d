"""The converters' energy (analog/energy_figures.py) against hand computations from the
published figures: an 8-bit conversion of Kull et al. (ISSCC 2013) is 3.1 mW / 1.2 GS/s,
scaled by 2^(b − 8); a b-bit bit-serial input is b conversions of ISAAC's 1-bit DAC,
4 mW / (1024 DACs × 1.2e7 conversions/s). Then on a chip with a 4-bit DAC and a 6-bit ADC:
the inference and the training step count exactly those conversions, and a block without
converters counts none. Also the PCM pulse figures: separate SET and RESET passes."""
import numpy as np
import pytest

from analog.capacitance import node_capacitance
from analog.energy_figures import FIGURES, ConverterCost, ConverterEnergy, converter_cost_of
from analog.errors import AnalogInputError
from analog.hardware.converters import Converters, with_edges
from analog.hardware.spec import AdcSpec, DacSpec, HardwareSpec
from analog.inference_energy import measure_inferences
from analog.native import NativeEngine
from analog.training_energy import PulseSpec, device_pulse, programming_cost, training_step
from analog.transient import NativeTransient, TransientSpec
from tests.analog_circuits import block, inputs

E_ADC8 = 2.5833333333e-12        # 3.1e-3 W / 1.2e9 conversions/s
E_DAC1 = 3.2552083333e-13        # 4e-3 W / 1.2288e10 conversions/s


def test_converter_energy_follows_the_fom_model_by_hand():
    e = ConverterEnergy()
    assert e.adc(8) == pytest.approx(E_ADC8, rel=1e-9)
    assert e.adc(4) == pytest.approx(E_ADC8 / 16, rel=1e-9)
    assert e.adc(10) == pytest.approx(E_ADC8 * 4, rel=1e-9)
    assert e.fom == pytest.approx(10.09114583e-15, rel=1e-8)          # J per conversion step
    assert e.dac(1) == pytest.approx(E_DAC1, rel=1e-9) and e.dac(8) == pytest.approx(8 * E_DAC1, rel=1e-9)
    assert e.adc(None) == 0.0 and e.dac(None) == 0.0
    cost = ConverterCost(8, 8)
    # the main job's block: 150 inputs, 10 outputs; training adds 2 nudged phases × 10 current DACs
    assert cost.inference(150, 10) == pytest.approx(150 * 8 * E_DAC1 + 10 * E_ADC8, rel=1e-9)
    assert cost.training(150, 10, 2) == pytest.approx((150 + 20) * 8 * E_DAC1 + 10 * E_ADC8, rel=1e-9)
    for bad in (0, 2.5, -3):
        with pytest.raises(AnalogInputError, match="adc.bits"):
            ConverterCost(None, bad)


def _chip():
    m = block(features=3, hidden=(4,), outputs=2, g=(1e-6, 1e-4))
    m.compile(loss="mse", optimizer="sgd", beta=1e-6)
    spec = HardwareSpec(dac=DacSpec(bits=4), adc=AdcSpec(bits=6))
    conv = Converters(spec, m.circuit.n_outputs, np.random.default_rng(0), np.random.default_rng(1))
    return m, with_edges(m.circuit, conv, None)


def test_a_chip_with_converters_pays_for_its_conversions_and_a_bare_block_does_not():
    m, chip = _chip()
    c, G = m.circuit, m.conductances
    assert converter_cost_of(c) is None and converter_cost_of(chip) == ConverterCost(4, 6)
    per_inference = 3 * 4 * E_DAC1 + 2 * E_ADC8 / 4                  # 3 inputs at 4 bits, 2 outputs at 6 bits
    spec = TransientSpec(duration=1e-9, dt=5e-12, rise=1e-11)
    x = inputs(4, 3, scale=1.0, seed=2)
    for circ, want in ((c, 0.0), (chip, per_inference)):
        eng = NativeEngine(circ)
        r = measure_inferences(eng, G, node_capacitance(circ), circ.source_voltages(x), spec=spec)
        assert r["settled"].all()
        assert np.allclose(r["energy_converters"], want, rtol=1e-9, atol=0)
        assert np.allclose(r["energy"] - r["energy_sources"] - r["energy_amplifiers"], want, rtol=1e-6, atol=1e-24)
    eng = NativeEngine(chip)
    C = node_capacitance(chip)
    tr = NativeTransient(eng, C, spec)
    st = training_step(tr, chip, G, C, x, np.array([0, 1, 0, 1]), m.loss, 1e-6, pulse=PulseSpec(1e-13, 1e-8))
    per_sample = per_inference + 2 * 2 * 4 * E_DAC1                 # + the nudging currents: 2 phases × 2 outputs
    assert st.converter_energy == pytest.approx(per_sample, rel=1e-9)
    rest = sum(p.energy for p in st.phases.values()) + st.sample_hold_energy + st.programming["energy"]
    assert np.allclose(st.energy - rest, per_sample, rtol=1e-6, atol=0)


def test_pcm_pulses_take_their_own_set_and_reset_figures():
    pcm = device_pulse("pcm")
    # Lee et al. (ISCA 2009): SET 150 µA for 150 ns, RESET 300 µA for 40 ns, in R_on = 1 kΩ
    assert pcm.energy_j == pytest.approx(150e-6 ** 2 * 1e3 * 150e-9) == pytest.approx(3.375e-12)
    assert pcm.reset == pytest.approx((3.6e-12, 40e-9))
    counts = [np.array([[2, -1, 0], [0, -3, 1]])]
    got = programming_cost(counts, pcm)
    # row 0: SET pass 2 × 150 ns, RESET pass 1 × 40 ns; row 1: SET 1 × 150 ns, RESET 3 × 40 ns
    assert got["time"] == pytest.approx(3 * 150e-9 + 4 * 40e-9)
    assert got["energy"] == pytest.approx(3 * 3.375e-12 + 4 * 3.6e-12)
    assert programming_cost(counts, pcm, all_rows_at_once=True)["time"] == pytest.approx(2 * 150e-9 + 3 * 40e-9)
    rram = device_pulse("rram")
    assert (rram.energy_j, rram.duration_s, rram.reset) == (1e-13, 1e-8, (1e-13, 1e-8))
    with pytest.raises(AnalogInputError, match="reset_pulse_energy"):
        PulseSpec(1e-13, 1e-8, reset_energy_j=0.0)


def test_every_figure_names_its_source_and_grade():
    for name, f in FIGURES.items():
        assert f.grade in {"primary", "secondary", "derived", "assumption"}, name
        assert len(f.source) > 20 and np.isfinite(f.value) and f.value > 0, name
    # the two figures no published source was found for (docs/transient.md: their sensitivity);
    # the biases and the acquisition are derived from them (analog/amplifier_design.py)
    assumed = {n for n, f in FIGURES.items() if f.grade == "assumption"}
    assert assumed == {"slope_factor", "amplifier_time_ratio"}
    assert all(FIGURES[n].grade == "derived" for n in ("amplifier_bias", "sample_hold_bias", "sample_hold_acquire"))
    assert all(FIGURES[n].source.startswith("ours") for n in assumed)


def test_reference_figures_against_their_sources_arithmetic():
    """The comparison figures of docs/transient.md from the raw numbers their sources give."""
    F = FIGURES
    # ISAAC Table I: 1024 one-bit DACs draw 4 mW; 1.2e7 conversions/s each (Accelergy's
    # rate) gives our figure, the paper's 100 ns cycle 20 % more
    assert F["dac_energy_per_bit"].value * 1024 * 1.2e7 == pytest.approx(4e-3)
    assert 4e-3 * 100e-9 / 1024 == pytest.approx(1.2 * F["dac_energy_per_bit"].value)
    # PUMA's per-DAC power (0.00350625 + 0.000390625 mW) is the same row to 0.3 %
    assert (0.00350625 + 0.000390625) * 1e-3 * 1024 == pytest.approx(4e-3, rel=3e-3)
    # ISAAC's S&H: 10 uW over 1024 cells; PUMA's 9.7e-6 mW per cell agrees to 1 %
    assert F["isaac_sample_hold_power"].value * 1024 == pytest.approx(10e-6)
    assert F["isaac_sample_hold_power"].value == pytest.approx(9.7e-9, rel=0.01)
    # what the amplifier-bias note claims: at V_DD the sense amplifier draws 53.9 uA, 0.93 of the
    # derived bias; ISAAC's S&H 8.1 nA, 1/966 of the derived hold bias; the OTA 0.8 uA at 0.6 V
    vdd, bias = F["amplifier_supply"].value, F["amplifier_bias"].value
    assert F["cim_sense_amplifier_power"].value / vdd == pytest.approx(53.9e-6, rel=1e-3)
    assert F["cim_sense_amplifier_power"].value / vdd / bias == pytest.approx(0.93, rel=1e-2)
    assert F["sample_hold_bias"].value * vdd / F["isaac_sample_hold_power"].value == pytest.approx(966, rel=0.01)
    assert F["subthreshold_ota_power"].value / 0.6 == pytest.approx(0.8e-6)
    reference = ("isaac_sample_hold_power", "analog_storage_cell_power", "subthreshold_ota_power",
                 "discrete_opamp_current", "cim_sense_amplifier_power")
    assert all("reference only" in F[n].unit for n in reference)
