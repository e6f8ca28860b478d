"""Recalibration over time: in-situ pulses on a drifted chip act on the drifted conductances
and restart the pulsed devices' drift (checked against the drift formula written out here),
and `mixsig recalibrate RUN_ID --time T` end to end with its bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from analog import build_dense_network
from analog.hardware import PulsedOptimizer, finetune, program, resolve_hardware

T_C, NU, DW = 20.0, 0.05, 0.01


def _chip():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (64, 4))
    y = (x[:, 0] > 0).astype(int)
    model = build_dense_network(4, 2, hidden=(8,)).compile(loss="mse", optimizer="adam", beta=1e-7)
    model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    spec = resolve_hardware("ideal", {"device": {"drift": "constant", "nu_mean": NU, "nu_std": 0.0, "t_c": T_C,
                                                 "gamma": 0.0, "c2c": 0.0, "up_down": 0.0, "dw_min": DW},
                                      "drift_compensation": False})
    return program(model, spec, seed=0), x, y


def test_pulses_at_time_T_act_on_the_drifted_state_and_restart_its_drift():
    chip, x, y = _chip()
    G0 = [g.copy() for g in chip.G_prog]
    T, later = 86400.0, 30 * 86400.0
    f_T = (T / T_C) ** -NU                                   # every device drifted by this at T
    opt = PulsedOptimizer(chip.spec, lr=1.0, base="sgd", rule="manhattan")   # one pulse of ±dw_min each
    finetune(chip, x, y, loss=chip.model.loss, beta=chip.model.beta, optimizer=opt, epochs=1, batch_size=len(x), t=T)
    for k, layer in enumerate(chip.model.dense_layers):
        lo, hi = layer.g_min * chip.scale[k], layer.g_max * chip.scale[k]
        step = DW * (hi - lo)                                # one pulse, device units (γ = 0, no asymmetry)
        drifted = G0[k] * f_T
        inside = (drifted > lo + 1.5 * step) & (drifted < hi - 1.5 * step)
        at_T = chip.device_conductances_at(T, noise=False)[k]
        moved = at_T - drifted
        pulsed = inside & (np.abs(moved) > 1e-3 * step)
        assert pulsed.sum() > 10
        # a pulse adds one step to the conductance the device has at T (not to the one it had at 0)
        np.testing.assert_allclose(np.abs(moved[pulsed]), step, rtol=1e-9)
        np.testing.assert_allclose(at_T[~pulsed & inside], drifted[~pulsed & inside], rtol=1e-12)
        # afterwards a pulsed device drifts from T, an untouched one still from programming
        at_later = chip.device_conductances_at(later, noise=False)[k]
        np.testing.assert_allclose(at_later[pulsed], (drifted + moved)[pulsed] * ((later - T) / T_C) ** -NU,
                                   rtol=1e-9)
        untouched = inside & ~pulsed
        np.testing.assert_allclose(at_later[untouched], G0[k][untouched] * (later / T_C) ** -NU, rtol=1e-12)
    assert chip.programmed_at == T


def test_a_chip_written_at_T_refuses_earlier_reads_and_keeps_its_state_when_saved(tmp_path):
    from analog.errors import AnalogInputError
    from analog.hardware import Chip
    chip, x, y = _chip()
    opt = PulsedOptimizer(chip.spec, lr=1.0, base="sgd", rule="manhattan")
    finetune(chip, x, y, loss=chip.model.loss, beta=chip.model.beta, optimizer=opt, epochs=1, batch_size=len(x),
             t=3600.0)
    with pytest.raises(AnalogInputError, match=r"hardware.t=60.0: before the chip's last programming at 3600 s"):
        chip.device_conductances_at(60.0)
    chip.save(tmp_path / "c")
    back = Chip.load(tmp_path / "c")
    assert back.programmed_at == 3600.0
    for a, b in zip(chip.device_conductances_at(1e6, noise=False), back.device_conductances_at(1e6, noise=False)):
        np.testing.assert_array_equal(a, b)


def test_times_parse_with_units_and_bad_ones_name_the_option():
    from pipeline.errors import OptionError
    from pipeline.hardware.recalibration import check_time, parse_time
    assert parse_time("1d") == 86400.0 and parse_time("2h") == 7200.0 and parse_time("1y") == 3.15e7
    assert parse_time("30") == 30.0 and parse_time("1e3") == 1000.0
    with pytest.raises(OptionError, match=r"^--time=soon: not a time"):
        parse_time("soon")
    with pytest.raises(OptionError, match=r"^--time=-5: before programming"):
        check_time(-5.0, [])

    class Written:
        programmed_at = 86400.0
    with pytest.raises(OptionError, match=r"^--time=3600: before the chips' last programming at 86400 s"):
        check_time(3600.0, [Written()])


# ---------------------------------------------------------------------------------------
# the command, on the smoke hardware co-training without read noise (reads are repeatable)
# ---------------------------------------------------------------------------------------
def _mixsig(tmp, *args, check=True):
    """`mixsig` in a subprocess with a generous timeout (a loaded machine)."""
    import subprocess
    import sys

    from tests.test_pipeline_smoke import _env
    proc = subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], cwd=tmp, env=_env(tmp),
                          capture_output=True, text=True, timeout=1500)
    if check and proc.returncode != 0:
        raise AssertionError(f"mixsig {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def hw(tmp_path_factory):
    from tests.test_hardware_pipeline import SMOKE_HW
    from tests.test_pipeline_smoke import FASHION, client_for
    mixsig = _mixsig
    if not (FASHION / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST not available")
    tmp = tmp_path_factory.mktemp("recal")
    proc = mixsig(tmp, "cotrain", SMOKE_HW, "--set", "cotrain.rounds=0", "--set", "hardware.device.read_noise=none",
                  "--set", "hardware.times=[0,86400]", "-q")
    parent = proc.stdout.split("co-training ", 1)[1].split()[0]
    return tmp, client_for(tmp), parent, mixsig


@pytest.mark.slow
def test_recalibrate_is_a_nested_run_with_both_curves_and_its_encoder(hw):
    from analog.hardware import Chip
    from digital import load_encoder
    from pipeline.data import load_dataset
    tmp, client, parent, mixsig = hw
    proc = mixsig(tmp, "recalibrate", parent, "--time", "1d", "--eval-times", "1h,1d,1y", "-q")
    rid = proc.stdout.split("recalibrate run ", 1)[1].split(";")[0]
    run = client.get_run(rid)
    assert run.data.tags["mlflow.parentRunId"] == parent and run.data.tags["mixsig.status"] == "finished"
    m = run.data.metrics
    assert {"acc_without_at_t", "acc_with_at_t", "gain_at_t", "acc_with_tmax"} <= set(m)
    hist = {x.step: x.value for x in client.get_metric_history(rid, "acc_with_mean")}
    assert sorted(hist) == [1, 2]                       # from T = 1 day on: 1 day and 1 year, not 1 hour
    root = tmp / "runs" / rid
    table = json.loads((root / "recalibration.json").read_text())
    assert table["times"] == [3600.0, 86400.0, 3.15e7] and table["with"][0] == [None, None]
    assert (root / "plots" / "recalibration.png").stat().st_size > 10_000
    # the logged accuracy at T is the saved encoder on the saved chips, read without noise
    from pipeline.config import load_config
    cfg = load_config(root / "config.yaml")
    ds = load_dataset(cfg.data, seed=cfg.seed)
    enc = load_encoder(root / "encoder")
    chips_run = run.data.tags["mixsig.artifact.chips"]
    import mlflow
    chips_dir = Path(mlflow.artifacts.download_artifacts(run_id=chips_run, artifact_path="chips",
                                                         tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}"))
    accs = [Chip.load(chips_dir / f"chip{i}").accuracy(enc.embed(ds.x_test), ds.y_test, 86400.0) for i in (0, 1)]
    assert m["acc_with_at_t"] == pytest.approx(np.mean(accs), abs=1e-12)


@pytest.mark.slow
def test_recalibrate_bad_input_is_one_line_with_exit_2(hw):
    tmp, client, parent, mixsig = hw
    cases = {("--time", "-1"): "--time=-1: before programming",
             ("--time", "1d", "--eval-times", "1h,-2"): "--eval-times=-2: before programming",
             ("--time", "1d", "--chip", "5"): "--chip=5: the run has chips 0..1"}
    for args, text in cases.items():
        proc = mixsig(tmp, "recalibrate", parent, *args, check=False)
        assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [f"error: {proc.stderr.strip()[7:]}"]
        assert text in proc.stderr, proc.stderr
    exp = client.get_experiment_by_name("smoke_hw")
    digital = client.search_runs([exp.experiment_id], "tags.`mixsig.stage` = 'train-digital'")[0].info.run_id
    proc = mixsig(tmp, "recalibrate", digital, "--time", "1d", check=False)
    assert proc.returncode == 2 and f"RUN_ID={digital} (train-digital) has no chips" in proc.stderr, proc.stderr
    # chips fine-tuned in situ at 1 day cannot be recalibrated at an earlier time
    proc = mixsig(tmp, "recalibrate", parent, "--time", "1d", "--mode", "chip", "--eval-times", "1d", "-q")
    rid = proc.stdout.split("recalibrate run ", 1)[1].split(";")[0]
    proc = mixsig(tmp, "recalibrate", rid, "--time", "1h", check=False)
    assert proc.returncode == 2
    assert "--time=3600: before the chips' last programming at 86400 s" in proc.stderr, proc.stderr


def _table(t, mode, without, with_):
    return {"times": [0.0, 3600.0, 86400.0], "t": t, "mode": mode, "loop_chip": 0, "without": without, "with": with_}


def test_several_recalibrations_plot_together_from_their_tables(tmp_path, capsys):
    from pipeline.cli import main
    from pipeline.hardware.recalibration import tables_series
    without = [[0.70, 0.60], [0.68, 0.58], [0.66, 0.50]]
    a = _table(3600.0, "encoder", without, [None, [0.80, 0.62], [0.78, 0.60]])
    b = _table(86400.0, "chip", without, [None, None, [0.75, 0.65]])
    s = tables_series([a, b])
    times, mean, std = s["without recalibration, mean over chips"]
    assert np.allclose(mean, [0.65, 0.63, 0.58]) and np.all(np.asarray(std) > 0)
    assert s["recalibrated at 1 h (encoder), mean"][0] == [3600.0, 86400.0]
    assert np.allclose(s["recalibrated at 1 h (encoder), mean"][1], [0.71, 0.69])
    assert s["recalibrated at 1 d (chip), chip 0"] == ([86400.0], [0.75], None)
    for name, tab in (("a", a), ("b", b)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "recalibration.json").write_text(json.dumps(tab))
    out = tmp_path / "both.png"
    assert main(["compare", "--recalibration", str(tmp_path / "a"), "--recalibration",
                 str(tmp_path / "b" / "recalibration.json"), "--output", str(out)]) == 0
    assert out.stat().st_size > 10_000
    assert main(["compare", "--recalibration", str(tmp_path)]) == 2
    assert "no recalibration.json there" in capsys.readouterr().err
