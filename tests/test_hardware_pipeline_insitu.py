"""In-situ EP fine-tuning on a programmed chip (issue 12, `e2e_acc_insitu`), frozen-chip
co-trainings that start from a given block (issue 13 part 3), stage times and per-round
gains on the parent run (issue 13 part 7).

The analog part checks `analog.hardware.finetune` against independent computations: one
pulsed SGD step on a nearly continuous device equals the step computed from the exact
gradient of the chip's *realised* circuit (and not the ideal block's), stuck devices never
move, and on a damaged block the fine-tuned chips win back accuracy. The pipeline part runs
`experiments/smoke_hw.yaml` through the CLI with hardware.finetune_epochs, then a second
co-training from its train-analog run."""
from __future__ import annotations

import numpy as np
import pytest

from tests.analog_circuits import trained_three_class_block


def _cos(a, b) -> float:
    a, b = np.concatenate([x.ravel() for x in a]), np.concatenate([x.ravel() for x in b])
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def block():
    return trained_three_class_block(n=300, hidden=12, epochs=3)


def test_one_pulsed_step_follows_the_realised_circuit_gradient(block):
    """Continuous-like device (dw_min 1e-5, constant step, no c2c, no read noise), SGD base,
    one batch: ΔG equals −lr·span²·∂C/∂G of the chip's varied circuit at its programmed
    conductances (exact implicit gradient), to the pulse resolution; the ideal circuit's
    gradient points elsewhere."""
    from analog import exact_gradients
    from analog.hardware import PulsedOptimizer, finetune, program, resolve_hardware
    from analog.native import NativeEngine
    model, x, y = block
    spec = resolve_hardware("ideal", {"device": {"prog_noise": "constant", "prog_sigma": 2e-6, "dw_min": 1e-5,
                                                 "gamma": 0.0}, "variation": {"is_sigma": 2.0, "offset_sigma": 0.1}})
    chip = program(model, spec, seed=3)
    xb, yb = x[:64], y[:64]
    G0 = [g / k for g, k in zip(chip.G_prog, chip.scale)]
    lr = 1.0                      # steps of ~100 pulses: well above the pulse resolution
    expected_chip = exact_gradients(NativeEngine(chip.circuit), chip.circuit, G0, xb, yb, model.loss).grads
    expected_ideal = exact_gradients(NativeEngine(model.circuit), model.circuit, G0, xb, yb, model.loss).grads
    opt = PulsedOptimizer(spec, lr=lr, base="sgd", rule="pulses")
    finetune(chip, xb, yb, loss=model.loss, beta=1e-9, optimizer=opt, epochs=1, batch_size=len(xb))
    dG = [g / k - g0 for g, k, g0 in zip(chip.G_prog, chip.scale, G0)]
    layers = model.dense_layers
    lo = [max(spec.device.g_min / (spec.device.g_max / L.g_max), L.g_min) for L in layers]

    def sgd(grads):   # the SGD step on the pulsed range (a device at a bound stays there)
        return [np.clip(g0 - lr * (L.g_max - L.g_min) ** 2 * g, a, L.g_max) - g0
                for g0, L, g, a in zip(G0, layers, grads, lo)]
    step_chip, step_ideal = sgd(expected_chip), sgd(expected_ideal)
    assert _cos(dG, step_chip) > 0.999
    assert _cos(dG, step_ideal) < _cos(dG, step_chip) - 0.01      # the variation matters: a real test
    for d, s, L, a in zip(dG, step_chip, layers, lo):
        resolution = 1e-5 * (L.g_max - a)
        assert np.max(np.abs(d - s)) < 0.05 * np.max(np.abs(s)) + resolution


def _one_sgd_step(block, spec, **kw):
    """(ΔG of one pulsed SGD step of finetune on a fresh chip, the chip, G before) in trained units."""
    from analog.hardware import PulsedOptimizer, finetune, program
    model, x, y = block
    chip = program(model, spec, seed=3)
    G0 = [g / k for g, k in zip(chip.G_prog, chip.scale)]
    opt = PulsedOptimizer(spec, lr=1.0, base="sgd", rule="pulses")
    finetune(chip, x[:64], y[:64], loss=model.loss, beta=1e-9, optimizer=opt, epochs=1, batch_size=64, **kw)
    return [g / k - g0 for g, k, g0 in zip(chip.G_prog, chip.scale, G0)], chip, G0


def test_finetune_clips_mse_targets_onto_the_adc_range(block):
    """A 12-bit ADC whose full scale R lies inside the MSE's ±0.5 V targets: the in-situ step
    follows the exact gradient of an MSE with targets ±R written by hand (and, with
    readable_targets=False, of the ±0.5 V one); the two steps differ, so the test can fail."""
    from analog import exact_gradients
    from analog.hardware import program, resolve_hardware
    from analog.hardware.insitu import readable_loss
    from analog.losses import MSE
    from analog.native import NativeEngine
    model, x, y = block
    r = 0.5 * float(np.abs(model.predict(x)).max())
    assert r < model.loss.amplitude              # the targets lie beyond the ADC's range
    spec = resolve_hardware("ideal", {"device": {"dw_min": 1e-5, "gamma": 0.0}, "adc": {"bits": 12, "range": r}})

    def expected(chip, G0, loss):     # the SGD step on the pulsed range (a device at a bound stays there)
        g = exact_gradients(NativeEngine(chip.circuit), chip.circuit, G0, x[:64], y[:64], loss).grads
        lo = [max(spec.device.g_min / (spec.device.g_max / L.g_max), L.g_min) for L in model.dense_layers]
        return [np.clip(g0 - (L.g_max - L.g_min) ** 2 * gi, a, L.g_max) - g0
                for g0, L, gi, a in zip(G0, model.dense_layers, g, lo)]
    dG, chip, G0 = _one_sgd_step(block, spec)
    clipped, raw = expected(chip, G0, MSE(amplitude=r)), expected(chip, G0, MSE(amplitude=0.5))
    assert _cos(dG, clipped) > 0.999 and _cos(clipped, raw) < 0.99
    dG_raw, chip_raw, G0_raw = _one_sgd_step(block, spec, readable_targets=False)
    assert _cos(dG_raw, raw) > 0.999
    # midpoint 0.2 V, amplitude 0.5 V: targets +0.7 / −0.3 V; r ≈ 0.38 V clips the top one only
    assert 0.3 < r < 0.7
    _, g = readable_loss(chip, MSE(midpoint=0.2, amplitude=0.5))(np.zeros((3, 3)), np.array([0, 1, 2]))
    np.testing.assert_allclose(g, -np.where(np.eye(3, dtype=bool), r, -0.3), atol=1e-12)
    plain = MSE()      # no ADC bits: the loss as given
    assert readable_loss(program(model, resolve_hardware("ideal"), seed=0), plain) is plain


def test_finetune_recovers_a_damaged_chip_and_keeps_stuck_devices(block):
    """RRAM without write-verify (σ 0.3 g_max, 10 % stuck): the programmed chips lose accuracy;
    three in-situ epochs (read noise, noisy pulses) win most of it back on each of 3 chips;
    stuck devices keep their exact value, every device stays in its range."""
    from analog.hardware import PulsedOptimizer, finetune, program, resolve_hardware
    model, x, y = block
    ideal = model.scores(x, y)["accuracy"]
    spec = resolve_hardware("rram", {"device": {"prog_sigma": 1.2e-5, "stuck_g_min": 0.05, "stuck_g_max": 0.05}})
    before, after = [], []
    for seed in range(3):
        chip = program(model, spec, seed)
        G_prog0, stuck = [g.copy() for g in chip.G_prog], [s != 0 for s in chip.stuck]
        before.append(chip.accuracy(x, y, 0.0))
        opt = PulsedOptimizer(spec, lr=0.01, base="adam", rule="stochastic", seed=seed)
        hist = finetune(chip, x, y, loss=model.loss, beta=model.beta, optimizer=opt, epochs=3, batch_size=16)
        after.append(chip.accuracy(x, y, 0.0))
        assert hist["pulses"][0] > 0 and len(hist["loss"]) == 3
        for g, g0, s in zip(chip.G_prog, G_prog0, stuck):
            assert s.any() and np.array_equal(g[s], g0[s])
            assert not np.allclose(g[~s], g0[~s])
            assert g.min() >= spec.device.g_min * (1 - 1e-12) and g.max() <= spec.device.g_max * (1 + 1e-12)
    drop = ideal - np.mean(before)
    assert drop > 0.1, (ideal, before)                       # the damage is real
    assert np.mean(after) - np.mean(before) > 0.6 * drop, (ideal, before, after)
    assert min(a - b for a, b in zip(after, before)) > 0


def test_chip_set_programmed_drops_cached_reads(block):
    from analog.hardware import program, resolve_hardware
    model, x, _ = block
    chip = program(model, resolve_hardware("pcm"), seed=0)
    chip.conductances_at(3600.0)
    new = [g * 0.9 for g in chip.G_prog]
    chip.set_programmed(new)
    np.testing.assert_allclose(chip.device_conductances_at(0.0, noise=False)[0], new[0])
    with pytest.raises(ValueError, match="set_programmed: shapes"):
        chip.set_programmed(new[:1])


# ---------------------------------------------------------------------------------------
# plans
# ---------------------------------------------------------------------------------------
def _cfg(**hw):
    from pipeline.config import load_config
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    return load_config(root / "experiments" / "smoke_hw.yaml", [f"hardware.{k}={v}" for k, v in hw.items()])


def test_plans_with_finetuning_and_a_given_block():
    from pipeline.cotraining.run import make_plan
    names = lambda plan: [f"{n} r{r}" for n, r in plan]  # noqa: E731
    assert names(make_plan(_cfg(finetune_epochs=1))) == [
        "train-digital r0", "embed r0", "train-analog r0", "program r0", "finetune-chip r0", "optimize-inputs r0",
        "retrain-digital r0", "embed r1", "evaluate r1"]
    assert names(make_plan(_cfg(), block_given=True)) == [
        "program r0", "optimize-inputs r0", "retrain-digital r0", "embed r1", "evaluate r1"]
    cfg = _cfg(finetune_epochs=2)
    cfg = cfg.model_copy(update={"cotrain": cfg.cotrain.model_copy(update={"rounds": 0})})
    assert names(make_plan(cfg, block_given=True)) == ["program r0", "finetune-chip r0", "evaluate r0"]
    cfg = _cfg(frozen="false", finetune_epochs=1)          # not frozen: every programming is fine-tuned
    assert names(make_plan(cfg)).count("finetune-chip r1") == 1


def test_config_keys_are_checked():
    from pipeline.config import load_config
    from pipeline.config.errors import ConfigError
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    for bad, key in (("hardware.finetune_epochs=-1", "finetune_epochs"), ("hardware.finetune_lr=0", "finetune_lr")):
        with pytest.raises(ConfigError, match=f"hardware.{key}"):
            load_config(root / "experiments" / "smoke_hw.yaml", [bad])


# ---------------------------------------------------------------------------------------
# through the CLI
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def insitu_runs(tmp_path_factory):
    from tests.test_pipeline_smoke import FASHION, client_for, mixsig
    if not (FASHION / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST not available")
    from pathlib import Path
    smoke_hw = Path(__file__).resolve().parents[1] / "experiments" / "smoke_hw.yaml"
    tmp = tmp_path_factory.mktemp("smoke_insitu")
    proc = mixsig(tmp, "cotrain", smoke_hw, "--set", "hardware.finetune_epochs=2", "--set",
                  "hardware.pulse_rule=stochastic", "-q")
    first = proc.stdout.split("co-training ", 1)[1].split()[0]
    client = client_for(tmp)
    kids = {k.data.tags["mixsig.stage"] + " r" + k.data.tags["mixsig.round"]: k
            for k in client.search_runs([client.get_run(first).info.experiment_id],
                                        f"tags.mlflow.parentRunId = '{first}'")}
    proc = mixsig(tmp, "cotrain", smoke_hw, "--from-run", kids["train-analog r0"].info.run_id, "--set",
                  "cotrain.rounds=0", "-q")
    second = proc.stdout.split("co-training ", 1)[1].split()[0]
    return tmp, client, client.get_run(first), kids, client.get_run(second)


@pytest.mark.slow
def test_insitu_scenario_on_the_parent(insitu_runs):
    tmp, client, parent, kids, _ = insitu_runs
    pm = parent.data.metrics
    ft = kids["finetune-chip r0"]
    at = lambda run, key, step: [m.value for m in client.get_metric_history(run.info.run_id, key)  # noqa: E731
                                 if m.step == step][-1]
    chips0 = [at(ft, f"chip_acc_chip{i}", 0) for i in range(2)]
    assert pm["e2e_acc_insitu"] == pytest.approx(np.mean(chips0))
    assert pm["e2e_acc_insitu_tmax"] == pytest.approx(np.mean([at(ft, f"chip_acc_chip{i}", 1) for i in range(2)]))
    value = (pm["e2e_acc_insitu"] - pm["e2e_acc_programmed"]) / (pm["e2e_acc_ideal"] - pm["e2e_acc_programmed"])
    if "recovered_fraction_insitu" in pm:
        assert pm["recovered_fraction_insitu"] == pytest.approx(value)
    # the fine-tuned chips are the ones the rounds used and stored: non-stuck devices moved
    root = tmp / "runs" / parent.info.run_id
    with np.load(root / "03-program-r0" / "chips" / "chip0" / "chip.npz") as a, \
            np.load(root / "04-finetune-chip-r0" / "chips" / "chip0" / "chip.npz") as b:
        assert not np.allclose(a["G_prog/0"], b["G_prog/0"])
        assert np.array_equal(a["stuck/0"], b["stuck/0"])
    inputopt = kids["optimize-inputs r0"]
    assert inputopt.data.tags["mixsig.artifact.chips"] == ft.info.run_id


@pytest.mark.slow
def test_stage_times_and_round_gains_on_the_parent(insitu_runs):
    _, client, parent, kids, _ = insitu_runs
    pm = parent.data.metrics
    for name, run in kids.items():
        stage = name.split()[0].replace("-", "_")
        assert pm[f"seconds_{stage}"] >= run.data.metrics["stage_seconds"] - 1e-9
    assert pm["seconds_stages"] == pytest.approx(sum(k.data.metrics["stage_seconds"] for k in kids.values()))
    e2e = {m.step: m.value for m in client.get_metric_history(parent.info.run_id, "round_e2e_accuracy")}
    gain = {m.step: m.value for m in client.get_metric_history(parent.info.run_id, "round_gain")}
    assert sorted(e2e) == [0, 1] and gain[1] == pytest.approx(e2e[1] - e2e[0])
    # round 1 on chip 0 = what retrain-digital measured on it
    assert e2e[1] == pytest.approx(kids["retrain-digital r0"].data.metrics["chip0_end_to_end_test_accuracy"])
    arts = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/e2e_per_round.png" in arts


@pytest.mark.slow
def test_a_frozen_cotraining_from_a_given_block_reprograms_the_same_chips(insitu_runs):
    """--from-run of the first run's train-analog run: no train-digital/embed/train-analog;
    the same block programmed with the same seeds gives the same chips and accuracies."""
    tmp, client, parent, kids, second = insitu_runs
    kids2 = client.search_runs([second.info.experiment_id], f"tags.mlflow.parentRunId = '{second.info.run_id}'")
    assert sorted(k.data.tags["mixsig.stage"] for k in kids2) == ["evaluate", "program"]
    prog2 = next(k for k in kids2 if k.data.tags["mixsig.stage"] == "program")
    assert prog2.data.tags["mixsig.artifact.analog"] == kids["train-analog r0"].info.run_id
    for key in ("e2e_acc_programmed", "e2e_acc_ideal", "e2e_acc_programmed_tmax"):
        assert second.data.metrics[key] == pytest.approx(parent.data.metrics[key])
