"""`mixsig verify --hardware` and the real-device figures of `mixsig bench` (issue 11)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "MLFLOW_TRACKING_URI": "sqlite:////nonexistent/never-used.db"}


def _mixsig(*args):
    return subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(not shutil.which("ngspice"), reason="ngspice not installed")
def test_verify_on_a_varied_chip_meets_the_agreement_and_gradient_targets():
    """The iris block programmed onto an RRAM chip (programming error, stuck devices, read
    noise, diode IS and threshold, amplifier gain and offset all varied), read one day after
    programming: native ≡ ngspice to 1e-6 V and symmetric EP ≈ exact gradient on the chip."""
    out = _mixsig("verify", "experiments/iris.yaml", "--hardware", "rram", "--time", "86400", "-n", "12", "--json")
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    assert rep["hardware"] == "rram" and rep["t"] == 86400.0
    assert rep["max_abs_dv"] <= 1e-6
    for row in list(rep["layers"].values()) + [rep["input_gradient"]]:
        assert row["cos_symmetric"] >= 0.999


def test_verify_names_an_unknown_preset_and_lists_the_known_ones():
    out = _mixsig("verify", "experiments/xor.yaml", "--hardware", "flash", "--no-ngspice")
    assert out.returncode == 2
    line = out.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert "flash" in line and "pcm" in line and "rram" in line


def test_verify_refuses_a_read_before_programming():
    out = _mixsig("verify", "experiments/xor.yaml", "--hardware", "pcm", "--time", "-1", "--no-ngspice")
    assert out.returncode == 2 and "--time" in out.stderr and "Traceback" not in out.stderr


def test_bench_reports_the_real_device_rates():
    """Keys and sanity only (rates are measured, not asserted: the machine is shared)."""
    out = _mixsig("bench", "--no-ngspice", "--no-edges", "--json", "--batch", "200", "--train-samples", "400",
                  "--train-batch", "200")
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    for key in ("native_samples_per_s", "ep_train_samples_per_s", "chip_native_samples_per_s",
                "ep_train_aware_samples_per_s", "ep_train_pulsed_samples_per_s"):
        assert rep[key] > 0, key
    assert "chip_wires_native_samples_per_s" not in rep


def test_bench_edge_rates_on_a_small_block():
    """The converters-and-wires figures, in process on a small block (keys and sanity only)."""
    from types import SimpleNamespace

    import numpy as np

    from analog.builders import build_dense_network
    from pipeline.commands import bench
    model = build_dense_network(6, 3, hidden=(8,), seed=0)
    model.compile(loss="mse", optimizer="adam", beta=1e-6, nudging="symmetric")
    x = np.random.default_rng(0).uniform(-1, 1, (64, 6))
    y = np.arange(64) % 3
    args = SimpleNamespace(batch=32, train_samples=64, train_batch=16)
    eng = model.get_engine("native")

    def step_epoch(perturb, optimizer):
        from analog.ep import ep_gradients
        for lo in range(0, args.train_samples, args.train_batch):
            sl = slice(lo, lo + args.train_batch)
            g = ep_gradients(eng, model.circuit, model.conductances, x[sl], y[sl], model.loss, model.beta)
            optimizer.apply(model.dense_layers, g.grads)
    rep = bench._edge_rates(model, eng, x, y, args, step_epoch)
    for key in ("chip_wires_native_samples_per_s", "ratio_chip_wires_vs_native", "ep_train_wires_samples_per_s",
                "ratio_wires_vs_ideal_step"):
        assert rep[key] > 0, key


def test_bench_refuses_a_negative_batch():
    out = _mixsig("bench", "--batch", "-5")
    assert out.returncode == 2 and "--batch" in out.stderr


@pytest.mark.parametrize("rule", ["pulses", "stochastic", "manhattan"])
def test_config_pulse_rule_reaches_the_in_situ_optimiser(rule):
    import yaml

    from pipeline.system.analog_block import model_from_config
    from pipeline.config import validate_config
    raw = yaml.safe_load((ROOT / "experiments/iris.yaml").read_text())
    raw["hardware"] = {"preset": "ebana-4level", "training": "in-situ", "pulse_rule": rule}
    model = model_from_config(validate_config(raw), 4, 3)
    assert type(model.optimizer).__name__ == "PulsedOptimizer" and model.optimizer.rule == rule


def _hw_config(hardware: dict) -> dict:
    import yaml

    from pipeline.config import validate_config
    raw = yaml.safe_load((ROOT / "experiments/iris.yaml").read_text())
    raw["hardware"] = hardware
    return validate_config(raw)


def test_hardware_fields_written_like_1e_7_are_numbers():
    """YAML 1.1 reads 1e-7 (no dot) as a string; in the preset sections it is the number too."""
    import yaml
    cfg = _hw_config(yaml.safe_load("{preset: pcm, device: {g_min: 1e-7, prog_sigma: 2}}"))
    assert cfg.hardware.overrides["device"]["g_min"] == 1e-7


def test_a_preset_field_given_twice_is_refused_naming_both_keys():
    from pipeline.config import ConfigError
    with pytest.raises((ConfigError, ValueError)) as err:
        _hw_config({"preset": "pcm", "device": {"prog_sigma": 3.0}, "overrides": {"device": {"prog_sigma": 2.0}}})
    msg = str(err.value)
    assert "hardware.device.prog_sigma" in msg and "hardware.overrides.device.prog_sigma" in msg
    same = _hw_config({"preset": "pcm", "device": {"prog_sigma": 3.0}, "overrides": {"device": {"prog_sigma": 3.0}}})
    assert same.hardware.overrides["device"]["prog_sigma"] == 3.0


def test_the_devices_page_example_runs_as_written(tmp_path, monkeypatch):
    """docs/devices.md's first code block is self-contained: train a toy block, program a
    chip, read it a day later, save/load it, write its netlist."""
    import re
    code = re.search(r"```python\n(.*?)```", (ROOT / "docs/devices.md").read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "docs/devices.md", "exec"), scope)
    assert scope["out"].shape == (64, 2) and 0.0 <= scope["acc"] <= 1.0 and (tmp_path / "chip").is_dir()
    assert scope["netlist"].lstrip().startswith(("*", ".title")) or ".end" in scope["netlist"]


def test_a_chip_caches_engines_with_nested_options_like_a_model():
    """Chip.engine shares the model's engine cache (analog.engine_cache.cached_engine): options
    that are dicts work (a tuple key of them raised TypeError), equal options reuse one
    engine, and the native engine's solve equals one built by hand."""
    import numpy as np

    from analog import NativeEngine, build_dense_network
    from analog.hardware import program
    model = build_dense_network(3, 2, hidden=(4,))
    chip = program(model, "pcm", seed=0)
    a = chip.engine("native", tol_v=1e-11)
    assert chip.engine("native", tol_v=1e-11) is a
    x = np.random.default_rng(0).uniform(-1, 1, (5, 3))
    G = chip.conductances_at(0.0, rng=np.random.default_rng(1))
    ref = NativeEngine(chip.circuit, tol_v=1e-11).solve(G, x)
    assert np.array_equal(a.solve(G, x).v, ref.v)
    nested = chip.engine("ngspice-rebuild", processes=1, options={"pivrel": 1e-5})
    assert nested is chip.engine("ngspice-rebuild", options={"pivrel": 1e-5}, processes=1)
    chip.close()
