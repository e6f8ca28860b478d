"""retrain-digital's methods (targets / through-analog / both): the shift-followed measure,
refusal of encoders without gradients before any run, and warm-started input optimisation."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analog.input_optimization import optimize_inputs
from pipeline.system.through_analog import check_differentiable, grad_fn_for, shift_followed
from tests.analog_circuits import trained_three_class_block

ROOT = Path(__file__).resolve().parents[1]
FASHION = Path(os.environ.get("MIXSIG_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))


def test_shift_followed_by_hand():
    before = np.array([[0.0, 0.0], [1.0, 1.0]])
    targets = np.array([[1.0, 0.0], [1.0, 3.0]])        # requested shifts (1, 0) and (0, 2): Σ‖·‖² = 5
    after = np.array([[0.5, 0.5], [1.0, 2.0]])          # moved (0.5, 0.5) and (0, 1)
    s = shift_followed(before, targets, after)
    assert s["reproduced"] == pytest.approx((0.5 + 2.0) / 5.0)
    assert s["residual"] == pytest.approx(np.sqrt((0.25 + 0.25 + 1.0) / 5.0))
    assert shift_followed(before, targets, targets)["reproduced"] == pytest.approx(1.0)
    assert np.isnan(shift_followed(before, before, after)["reproduced"])


def test_encoder_without_gradients_is_named_and_targets_suggested():
    from digital import PCAEncoder

    from pipeline.config import validate_config
    cfg = validate_config({"name": "t", "digital": {"retrain_method": "through-analog", "encoder": "pca"}})
    with pytest.raises(ValueError, match=r"PCAEncoder.*digital.encoder='pca'.*retrain_method: targets"):
        check_differentiable(PCAEncoder(embedding_dim=4), cfg)
    check_differentiable(PCAEncoder(embedding_dim=4),
                         validate_config({"name": "t", "digital": {"retrain_method": "targets", "encoder": "pca"}}))


@pytest.fixture(scope="module")
def block():
    return trained_three_class_block(n=120, hidden=10, epochs=1)


def test_grad_fn_is_the_block_input_gradient_with_nonconverged_rows_nan(block):
    model, x, y = block
    idx = np.array([3, 7, 11])
    g = grad_fn_for(model, y)(x[idx], idx)
    exact = model.gradients(x[idx], y[idx], method="exact").input_grad
    assert g.shape == (3, 6)
    assert np.allclose(g, exact, rtol=1e-3, atol=1e-6 * np.abs(exact).max())


def test_warm_start_same_targets_no_more_newton_iterations(block, monkeypatch):
    # Since the native engine relaxes a cold start of a layered block before Newton, a cold start
    # converges in about as many iterations as a warm one (about 3 per sample here); the warm start
    # must give the same targets and cost no more.
    model, x, y = block
    eng = model.engine
    real = eng.solve
    iters = []

    def counting(*a, **k):
        sol = real(*a, **k)
        iters.append(int(np.nansum(sol.iterations)))
        return sol

    monkeypatch.setattr(eng, "solve", counting)
    out = {}
    for warm in (False, True):
        iters.clear()
        r = optimize_inputs(model, x, y, lr=0.05, steps=15, margin=0.2, progress=False, warm_start=warm)
        out[warm] = (r, sum(iters))
    (cold, n_cold), (warm, n_warm) = out[False], out[True]
    assert cold.initially_reached.mean() < 1 and np.all(cold.steps[~cold.initially_reached] > 0)
    assert np.array_equal(cold.reached, warm.reached)
    assert np.allclose(cold.targets, warm.targets, atol=1e-6)
    assert n_warm <= 1.05 * n_cold, (n_cold, n_warm)


def _mixsig(tmp: Path, *args):
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlflow.db'}", PYTHONPATH=str(ROOT),
               TF_CPP_MIN_LOG_LEVEL="3", MIXSIG_HOME=str(tmp))
    return subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(not (FASHION / "train-images-idx3-ubyte.gz").is_file(), reason="Fashion-MNIST not available")
def test_cotrain_with_pca_through_analog_is_refused_before_any_run(tmp_path):
    import yaml
    cfg = yaml.safe_load((ROOT / "experiments" / "smoke.yaml").read_text())
    cfg["digital"].pop("params")
    cfg["digital"].update(encoder="pca", retrain_method="through-analog")
    (tmp_path / "pca.yaml").write_text(yaml.safe_dump(cfg))
    proc = _mixsig(tmp_path, "cotrain", tmp_path / "pca.yaml")
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert err[-1].startswith("error: ") and "PCAEncoder" in err[-1] and "targets" in err[-1], err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.slow
@pytest.mark.skipif(not (FASHION / "train-images-idx3-ubyte.gz").is_file(), reason="Fashion-MNIST not available")
def test_cotrain_both_logs_the_shift_followed(tmp_path):
    import json
    proc = _mixsig(tmp_path, "cotrain", ROOT / "experiments" / "smoke.yaml", "--set", "digital.retrain_method=both")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "through the analog block" in proc.stdout and "fitting MLPEncoder to 540 target" in proc.stdout
    [folder] = list((tmp_path / "runs").glob("*/04-retrain-digital-r0"))
    m = json.loads((folder / "metrics.json").read_text())
    for k in ("shift_reproduced_train", "shift_reproduced_test", "shift_residual_train", "end_to_end_test_accuracy"):
        assert k in m, sorted(m)
    assert 0 < m["shift_reproduced_train"] < 1.5 and m["retrain_seconds"] > 0


def test_step_growth_reaches_more_within_a_small_budget(block):
    model, x, y = block
    lr, steps = 0.02, 4
    fixed = optimize_inputs(model, x, y, lr=lr, steps=steps, margin=0.1, progress=False)
    grown = optimize_inputs(model, x, y, lr=lr, steps=steps, margin=0.1, progress=False, step_growth=2.0)
    assert fixed.reached.mean() < 1
    assert grown.reached.mean() >= fixed.reached.mean() + 0.05
    # per component, the steps are at most lr, 2lr, 4lr, 4lr (max_lr defaults to 4·lr), so ≤ 11lr in all
    assert np.abs(fixed.targets_delta).max() <= steps * lr + 1e-12
    assert np.abs(grown.targets_delta).max() <= 11 * lr + 1e-12
    assert np.abs(grown.targets_delta).max() > steps * lr
    with pytest.raises(ValueError, match="step_growth"):
        optimize_inputs(model, x[:4], y[:4], step_growth=0.5, progress=False)
