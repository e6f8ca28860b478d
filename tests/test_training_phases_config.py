"""training.phases (pipeline/config/schema.py, wired by pipeline.system.analog_block.phase_cut):
a train-analog run with it steps along EP with its phases cut short. One full-batch SGD step
on xor is checked against the step computed here from analog.training_energy.
cut_short_gradients at the block's initial conductances (a function tested against EP in
tests/test_training_energy.py), and against EP's step, which it must not be; bad values exit
2 with one line naming the key."""
from __future__ import annotations

import re

import numpy as np
import pytest

from pipeline.cli import main
from tests.test_pipeline_smoke import ROOT, mixsig

XOR = ROOT / "experiments" / "xor.yaml"
T_CUT, STEPS = 2e-12, 5
ONE_SGD_STEP = ["--set", "training.epochs=1", "--set", "training.batch_size=1000",
                "--set", "training.optimizer={name: sgd, lr: 0.001, schedule: none}"]
PHASES = ["--set", f"training.phases={{t_free: {T_CUT}, t_nudged: {T_CUT}, steps: {STEPS}}}"]


def _sgd_step(model, grads):
    """What one plain SGD step moves each layer by (analog.optimizers.Optimizer.apply, unclipped)."""
    lr = model.optimizer.lr
    return [-lr * d.lr_scale * (d.g_max - d.g_min) ** 2 * g for d, g in zip(model.dense_layers, grads)]


def _start(overrides):
    """The run's block before training (same seed), compiled by the same config without phases,
    and the run's training data as volts."""
    from pipeline.config import load_config
    from pipeline.data import load_dataset, tabular_to_volts
    from pipeline.system.analog_block import model_from_config
    cfg = load_config(XOR, overrides)
    ds = load_dataset(cfg.data, seed=cfg.seed)
    x, _, _ = tabular_to_volts(ds.x_train, ds.x_val, ds.x_test, amplitude=cfg.analog.input_amplitude)
    return model_from_config(cfg, x.shape[1], ds.n_classes), x, ds.y_train.astype(int)


@pytest.mark.slow
def test_a_run_with_training_phases_steps_along_the_cut_short_estimate(tmp_path):
    from analog import AnalogModel
    from analog.capacitance import node_capacitance
    from analog.cep import cosine
    from analog.ep import ep_gradients
    from analog.training_energy import cut_short_gradients
    out = mixsig(tmp_path, "train-analog", XOR, *ONE_SGD_STEP, *PHASES).stdout
    run = re.search(r"train-analog run ([0-9a-f]{32}) finished", out).group(1)
    trained = AnalogModel.load(tmp_path / "runs" / run / "analog_model")
    start, x, y = _start([s for s in ONE_SGD_STEP if s != "--set"])
    eng, G0 = start.get_engine("native"), [g.copy() for g in start.conductances]
    cut = cut_short_gradients(eng, node_capacitance(start.circuit), G0, x, y, start.loss, start.beta, T_CUT, T_CUT,
                              nudging=start.nudging, steps=STEPS)
    assert cut.used.all() and len(x) <= 1000            # one step over every sample
    moved = [g - g0 for g, g0 in zip(trained.conductances, G0)]
    expected = _sgd_step(start, cut.grads)
    scale = max(np.abs(e).max() for e in expected)
    assert scale > 0 and all(np.allclose(m, e, rtol=0, atol=1e-9 * scale) for m, e in zip(moved, expected))
    # the cut phases are short enough that this is not EP's step
    ep = ep_gradients(eng, start.circuit, G0, x, y, start.loss, start.beta, start.nudging).grads
    assert cosine(moved, _sgd_step(start, ep)) < 0.99


@pytest.mark.parametrize("value, key", [("{t_free: 0, t_nudged: 1e-9}", "training.phases.t_free"),
                                        ("{t_free: 1e-9}", "training.phases.t_nudged"),
                                        ("{t_free: 1e-9, t_nudged: 1e-9, steps: 0}", "training.phases.steps"),
                                        ("1e-9", "training.phases")])
def test_bad_training_phases_exit_2_naming_the_key(capsys, tmp_path, value, key):
    assert main(["train-analog", str(XOR), "--workdir", str(tmp_path), "--set", f"training.phases={value}"]) == 2
    err = capsys.readouterr().err.strip()
    assert key in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()


def test_training_phases_refused_with_another_training_rule(capsys, tmp_path):
    assert main(["train-analog", str(XOR), "--workdir", str(tmp_path), *PHASES, "--set", "training.algorithm=c-ep",
                 "--set", "training.optimizer.name=sgd"]) == 2
    err = capsys.readouterr().err.strip()
    assert "training.phases" in err and "training.algorithm" in err and len(err.splitlines()) == 1, err
