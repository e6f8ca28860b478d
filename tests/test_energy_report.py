"""`mixsig energy` (pipeline/commands/energy.py, analog/energy_report.py): the digital side's
arithmetic against figures written out by hand from the sources, the chip's rows against
the chip figures they come from, and bad options refused in one line."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from analog.energy_report import DIGITAL, comparison, digital_macs

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "MLFLOW_TRACKING_URI": "sqlite:////nonexistent/never-used.db"}


def _mixsig(*args):
    return subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=600)


def test_macs_of_the_150_100_10_network():
    # forward 150·100 + 100·10 = 16,000; training adds Wᵀδ (100·10), the gradients and the update
    assert digital_macs() == {"inference": 16000, "training": 16000 + 1000 + 16000 + 16000}


def test_the_digital_rows_against_hand_arithmetic():
    chip = {"inference_time_s": 1e-10, "inference_energy_j": 4e-10, "inference_converter_energy_j": 3e-10,
            "training_time_s": 2e-6, "training_energy_j": 5e-9, "training_converter_energy_j": 1e-9,
            "training_all_rows_at_once_time_s": 1e-7, "training_all_rows_at_once_energy_j": 4e-9,
            "simulated_ep_step_cpu_s": 1e-3, "dac_bits": 8, "adc_bits": None}
    cpu = {"inference_b1": 1e-5, "inference_b256": 1e-6, "training_b1": 1e-4, "training_b256": 1e-5}
    rows = {(r["task"], r["system"]): r for r in comparison(chip, digital_macs(), cpu)}
    # Horowitz 45 nm: 3.7 + 0.9 pJ per FP32 MAC and 5 pJ per operand read; A100 19.5 TFLOPS, 400 W
    gpu = rows[("inference", "GPU A100, Horowitz per-op energy")]
    assert gpu["energy_j"] == pytest.approx(16000 * 9.6e-12, rel=1e-12)
    assert gpu["time_s"] == pytest.approx(32000 / 19.5e12, rel=1e-12)
    assert gpu["energy_vs_chip"] == pytest.approx(16000 * 9.6e-12 / 4e-10, rel=1e-12)
    assert gpu["energy_vs_bare_chip"] == pytest.approx(16000 * 9.6e-12 / 1e-10, rel=1e-12)
    board = rows[("training", "GPU A100, board power at peak FP32")]
    assert board["energy_j"] == pytest.approx(400 * 98000 / 19.5e12, rel=1e-12)
    cpu_row = rows[("training", "CPU (this machine, 1 core, batch 256)")]
    assert cpu_row["energy_j"] == pytest.approx(1e-5 * 350 / 56, rel=1e-12)
    assert rows[("training", "chip with converters, every row at once")]["time_vs_chip"] == pytest.approx(0.05)
    assert rows[("training", "chip without converters")]["energy_j"] == pytest.approx(4e-9)
    assert "8-bit DACs, no ADCs" in rows[("inference", "chip with converters")]["how"]
    assert {f.grade for f in DIGITAL.values()} <= {"primary", "secondary", "derived", "assumption"}


def test_energy_reports_the_chip_and_its_rows():
    out = _mixsig("energy", "--samples", "2", "--json")
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    chip = rep["chip"]
    assert chip["devices"] == (2 * 150 + 2) * 100 + (100 + 2) * 20
    assert chip["dac_bits"] == 8 and chip["adc_bits"] == 8
    assert chip["pulse_energy_j"] == pytest.approx(0.1e-12)        # RRAM, Lanza et al. 2019
    assert chip["training_energy_j"] > chip["programming_energy_j"] > 0
    first = {(r["task"], r["system"]): r for r in rep["rows"]}
    assert first[("inference", "chip with converters")]["energy_j"] == chip["inference_energy_j"]
    assert first[("inference", "chip without converters")]["energy_j"] == pytest.approx(
        chip["inference_energy_j"] - chip["inference_converter_energy_j"])


@pytest.mark.parametrize("option", ["--pulse-energy", "--pulse-duration", "--amplifier-bias", "--sh-acquire"])
def test_energy_refuses_a_bad_pulse_figure_in_one_line(option):
    out = _mixsig("energy", option, "0")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and option in lines[0] and lines[0].startswith("error:")


def test_energy_refuses_negative_bits():
    out = _mixsig("energy", "--adc-bits", "-1")
    assert out.returncode == 2 and "--adc-bits" in out.stderr and "Traceback" not in out.stderr


def test_the_split_rows_against_hand_arithmetic():
    from analog.energy_report import FrontEnd, split_rows
    fe = FrontEnd("PCA", macs=100_000, digital_only=84.0, analog_first=80.0, analog_best=81.0)
    int8, fp32 = split_rows([fe], e_analog=400e-12)
    # int8: 0.23 pJ per MAC; the head's 16,000 MACs 3.68 nJ against the block's 0.4 nJ
    assert int8["front_j"] == pytest.approx(100_000 * 0.23e-12)
    assert int8["analog_j"] == pytest.approx(23e-9 + 0.4e-9)
    assert int8["digital_head_j"] == pytest.approx(23e-9 + 3.68e-9)
    assert int8["saved_fraction"] == pytest.approx((3.68 - 0.4) / 26.68)
    assert fp32["arithmetic"] == "fp32" and fp32["front_j"] == pytest.approx(100_000 * 4.6e-12)
    assert fp32["acc_analog"] == 81.0 and fp32["acc_digital_head"] is None


def test_energy_split_prints_the_front_ends_and_refuses_a_bad_row(tmp_path):
    good = tmp_path / "fe.yaml"
    good.write_text("front_ends:\n  - {name: A, macs: 1000, digital_only: 90, analog_first: 89, analog_best: 91,"
                    " digital_head: 90.5}\n")
    out = _mixsig("energy", "--split", good, "--samples", "2", "--dac-bits", "0", "--adc-bits", "0", "--json",
                  "--plot", tmp_path / "s.png")
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    assert rep["inference"]["inference_converter_energy_j"] == 0
    assert [r["arithmetic"] for r in rep["rows"]] == ["int8", "fp32"]
    assert rep["rows"][0]["analog_j"] == pytest.approx(1000 * 0.23e-12 + rep["inference"]["inference_energy_j"])
    assert (tmp_path / "s.png").stat().st_size > 10_000
    bad = tmp_path / "bad.yaml"
    bad.write_text("front_ends:\n  - {name: A, macs: -1, digital_only: 90, analog_first: 89, analog_best: 91}\n")
    out = _mixsig("energy", "--split", bad)
    assert out.returncode == 2 and "front_ends[0].macs" in out.stderr and "Traceback" not in out.stderr


def test_inference_figures_on_a_programmed_chip_use_its_varied_circuit_and_read():
    """--chip: the chip's varied circuit and its read conductances, not the ideal block's (read
    noise off, so the read is deterministic and a direct transient can be compared)."""
    import numpy as np

    from analog.builders import build_dense_network
    from analog.capacitance import node_capacitance
    from analog.energy_report import inference_figures
    from analog.hardware import program, resolve_hardware
    from analog.inference_energy import AmplifierSupply, measure_inferences, readout_tolerance
    from analog.transient import TransientSpec
    model = build_dense_network(4, 2, hidden=(5,), seed=0)
    model.compile(loss="mse", optimizer="sgd", beta=1e-6)
    chip = program(model, resolve_hardware("rram", {"device.read_noise": "none"}), seed=3)
    x = np.random.default_rng(0).uniform(-1, 1, (3, 4))
    on_chip = inference_figures(model, x, chip=chip)
    ideal = inference_figures(model, x)
    c = chip.circuit
    direct = measure_inferences(chip.engine("native"), chip.conductances_at(0.0), node_capacitance(c),
                                c.source_voltages(x), spec=TransientSpec(duration=2e-9, dt=5e-12, rise=1e-11),
                                tol=readout_tolerance(8, 2.0), supply=AmplifierSupply(bias_a=None))
    assert on_chip["inference_energy_j"] == pytest.approx(float(np.nanmean(direct["energy"])), rel=1e-12, abs=0)
    assert on_chip["inference_energy_j"] != pytest.approx(ideal["inference_energy_j"], rel=1e-3, abs=0)


def test_energy_refuses_an_unknown_chip_preset_in_one_line():
    out = _mixsig("energy", "--samples", "1", "--chip", "nope")
    assert out.returncode == 2 and "--chip nope" in out.stderr and "Traceback" not in out.stderr
