"""The chip's converters: hand-worked codes, the chip's reads going through them, and bad
settings refused with one line naming the key."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analog.hardware import program, resolve_hardware
from analog.hardware.converters import quantise
from tests.analog_circuits import block, inputs

ROOT = Path(__file__).resolve().parents[1]


def test_quantiser_codes_worked_by_hand():
    # 2 bits over ±1 V: levels −1, −1/3, +1/3, +1 (step 2/3)
    got = quantise([0.1, -0.2, -0.35, -0.7, 5.0, -5.0, 1 / 3], 2, 1.0)
    np.testing.assert_allclose(got, [1 / 3, -1 / 3, -1 / 3, -1.0, 1.0, -1.0, 1 / 3], atol=1e-15)
    # 1 bit: the sign, ±R
    np.testing.assert_allclose(quantise([0.01, -0.01], 1, 0.6), [0.6, -0.6])
    # 8 bits over ±0.5 V: step 1/255; 0.123 → (0.623·255 = 158.865) → code 159
    np.testing.assert_allclose(quantise(0.123, 8, 0.5), -0.5 + 159 / 255, atol=1e-15)
    # 24 bits: error at most half a step
    u = np.random.default_rng(0).uniform(-1, 1, 1000)
    assert np.abs(quantise(u, 24, 1.0) - u).max() <= 1.0 / (2 ** 24 - 1) + 1e-15


def test_chip_reads_through_dac_and_adc():
    m = block(features=3, hidden=(5,), outputs=2)
    x = inputs(20, 3, scale=0.9)
    ideal = program(m, resolve_hardware("ideal"), seed=0)
    # DAC, 3 bits over ±0.8 V: the chip sees the hand-quantised inputs
    step = 1.6 / 7
    x_hand = -0.8 + np.clip(np.floor((x + 0.8) / step + 0.5), 0, 7) * step
    dac = program(m, resolve_hardware("ideal", {"dac": {"bits": 3, "range": 0.8}}), seed=0)
    np.testing.assert_allclose(dac.predict(x), ideal.predict(x_hand), atol=1e-12)
    assert np.abs(dac.predict(x) - ideal.predict(x)).max() > 1e-4
    # ADC, 4 bits over ±0.05 V, on each differential output before the class decision
    adc = program(m, resolve_hardware("ideal", {"adc": {"bits": 4, "range": 0.05}}), seed=0)
    y = m.predict(x)
    step = 0.1 / 15
    y_hand = -0.05 + np.clip(np.floor((y + 0.05) / step + 0.5), 0, 15) * step
    np.testing.assert_allclose(adc.predict(x), y_hand, atol=1e-12)
    # the outputs the pipeline reads (circuit.outputs of a solve) are the ADC's codes too
    np.testing.assert_allclose(adc.circuit.outputs(adc.solve(x).v), y_hand, atol=1e-12)


def test_adc_calibrated_from_a_calibration_set_and_kept_on_save(tmp_path):
    m = block(features=3, hidden=(5,), outputs=2)
    x_cal, x = inputs(50, 3, scale=0.9, seed=1), inputs(10, 3, scale=0.9, seed=2)
    chip = program(m, resolve_hardware("ideal", {"adc": {"bits": 6, "calibrate": True}}), seed=0)
    peak = np.abs(m.predict(x_cal)).max()
    assert chip.calibrate_adc(x_cal) == pytest.approx(peak, rel=1e-12)
    step = 2 * peak / 63
    y = m.predict(x)
    y_hand = -peak + np.clip(np.floor((y + peak) / step + 0.5), 0, 63) * step
    np.testing.assert_allclose(chip.predict(x), y_hand, atol=1e-12)
    chip.save(tmp_path / "chip")
    from analog.hardware import Chip
    again = Chip.load(tmp_path / "chip")
    np.testing.assert_allclose(again.predict(x), y_hand, atol=1e-12)


def test_adc_offsets_and_noise_have_their_spread():
    m = block(features=2, hidden=(3,), outputs=400)
    x = inputs(200, 2, scale=0.5)
    y = m.predict(x)
    off = program(m, resolve_hardware("ideal", {"adc": {"offset_sigma": 0.01}}), seed=4).predict(x) - y
    per_output = off[0]
    np.testing.assert_allclose(off, np.broadcast_to(per_output, off.shape), atol=1e-12)  # fixed per chip
    assert abs(per_output.std() / 0.01 - 1) < 5 / np.sqrt(2 * 400) and abs(per_output.mean()) < 5 * 0.01 / 20
    noise = program(m, resolve_hardware("ideal", {"adc": {"noise": 0.002}}), seed=4).predict(x) - y
    assert abs(noise.std() / 0.002 - 1) < 0.02 and abs(noise.mean()) < 1e-4


@pytest.mark.parametrize("section, key, value, words", [
    ("dac", "bits", 0, "hardware.dac.bits=0"),
    ("adc", "bits", 25, "hardware.adc.bits=25"),
    ("adc", "bits", 2.5, "hardware.adc.bits=2.5"),
    ("dac", "range", 0, "hardware.dac.range=0"),
    ("adc", "range", -1.0, "hardware.adc.range=-1.0"),
    ("wires", "r_segment", -1.0, "hardware.wires.r_segment=-1.0"),
    ("adc", "noise", -0.1, "hardware.adc.noise=-0.1"),
])
def test_bad_converter_and_wire_settings_name_their_key(section, key, value, words):
    from pipeline.config import ConfigError, validate_config
    with pytest.raises(ValueError, match="^" + words.replace(".", r"\.")):
        resolve_hardware("ideal", {section: {key: value}})
    with pytest.raises(ConfigError) as err:
        validate_config({"name": "t", "hardware": {"preset": "rram", section: {key: value}}})
    assert str(err.value).startswith(words)


def test_bad_bits_from_the_command_line_is_one_line_exit_2(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: t\nhardware:\n  preset: pcm\n  adc:\n    bits: 0\n")
    out = subprocess.run([sys.executable, "-m", "pipeline", "config", "show", str(cfg)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "hardware.adc.bits=0" in out.stderr, out.stderr
