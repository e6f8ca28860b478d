"""Input optimisation on a chosen cost (input_optimization.cost) and on any Block: the margin
hinge against its formula and central differences, a first step on a chip along the
normalised finite-difference gradient of the cross-entropy written out here, and the
config's settings reaching the optimiser (step_growth included)."""
from __future__ import annotations

import numpy as np
import pytest

from analog.hardware import program
from analog.input_optimization import margins, optimize_inputs
from analog.losses import CrossEntropy, Margin
from pipeline.config.errors import ConfigError
from pipeline.config.loading import validate_config
from pipeline.system.input_optimization import input_cost, optimize_inputs_for
from tests.analog_circuits import steady_chip_spec, trained_three_class_block


@pytest.fixture(scope="module")
def trained():
    model, x, y = trained_three_class_block(n=120, hidden=8, epochs=2)
    chip = program(model, steady_chip_spec(), seed=2)     # no read noise: every read is the same
    yield model, chip, x, y
    chip.close()
    model.close()


def test_margin_hinge_by_hand_and_by_central_differences():
    y = np.array([[0.30, 0.25, -0.2], [0.0, 0.5, 0.45], [0.9, 0.0, 0.1]])
    labels = np.array([0, 2, 0])
    cost, grad = Margin(0.1)(y, labels)
    # sample 0: 0.1 − (0.30 − 0.25) = 0.05 on class 1, class 2 clear; sample 1: class 0 clear
    # (0.1 − 0.45 < 0), class 1: 0.1 − (0.45 − 0.5) = 0.15; sample 2: all clear
    assert np.allclose(cost, [0.05, 0.15, 0.0])
    h = 1e-6
    for i in range(3):
        for k in range(3):
            e = np.zeros_like(y)
            e[i, k] = h
            fd = (Margin(0.1)(y + e, labels)[0][i] - Margin(0.1)(y - e, labels)[0][i]) / (2 * h)
            assert grad[i, k] == pytest.approx(fd, abs=1e-6)
    with pytest.raises(ValueError, match="margin"):
        Margin(0.0)


def test_the_config_selects_the_cost_and_names_a_bad_one():
    base = {"name": "t", "data": {"dataset": "xor"}}
    assert input_cost(validate_config(base)) is None                                  # default: the block's own
    ce = input_cost(validate_config({**base, "input_optimization": {"cost": "cross_entropy", "temperature": 0.05}}))
    assert isinstance(ce, CrossEntropy) and ce.temperature == 0.05
    hinge = input_cost(validate_config({**base, "input_optimization": {"cost": "margin", "margin": 0.2}}))
    assert isinstance(hinge, Margin) and hinge.margin == 0.2
    with pytest.raises(ConfigError, match="input_optimization.cost"):
        validate_config({**base, "input_optimization": {"cost": "hinge"}})


def _ce(out, labels, temperature=0.1):
    z = out / temperature
    return np.log(np.exp(z).sum(1)) - z[np.arange(len(labels)), labels]


def test_a_first_step_on_a_chip_follows_the_cross_entropy_of_its_class_scores(trained):
    model, chip, x, y = trained
    out = chip.predict(x)
    wrong = np.flatnonzero(margins(out, y) < 0.1)[:6]
    xs, ys, lr = x[wrong], y[wrong], 0.02
    res = optimize_inputs(chip, xs, ys, lr=lr, steps=1, margin=0.1, cost="cross_entropy", progress=False)
    h, fd = 1e-5, np.zeros_like(xs)
    for j in range(xs.shape[1]):
        e = np.zeros_like(xs)
        e[:, j] = h
        fd[:, j] = (_ce(chip.predict(xs + e), ys) - _ce(chip.predict(xs - e), ys)) / (2 * h)
    expected = np.clip(xs - lr * fd / np.abs(fd).max(1, keepdims=True), -1, 1)
    assert np.allclose(res.targets, expected, atol=0.05 * lr)
    mse = optimize_inputs(chip, xs, ys, lr=lr, steps=1, margin=0.1, progress=False)
    assert not np.allclose(mse.targets, res.targets, atol=0.05 * lr)              # another cost, another step
    full = optimize_inputs(chip, x, y, lr=0.05, steps=30, margin=0.1, cost="margin", progress=False)
    assert full.reached.mean() > full.initially_reached.mean()
    assert np.all(margins(chip.predict(full.targets[full.reached]), y[full.reached]) >= 0.1 - 1e-9)


def test_the_config_settings_reach_the_optimiser_step_growth_included(trained):
    model, _, x, y = trained
    io = {"lr": 0.03, "steps": 6, "margin": 0.15, "update": "normalized", "batch_size": 50, "method": "ep",
          "step_growth": 1.5, "cost": "margin", "temperature": 0.1, "shift_penalty": 2.0}
    cfg = validate_config({"name": "t", "data": {"dataset": "xor"}, "input_optimization": io})
    got = optimize_inputs_for(cfg, model, x, y, -0.9, 0.9)
    want = optimize_inputs(model, x, y, lr=0.03, steps=6, margin=0.15, v_low=-0.9, v_high=0.9, batch_size=50,
                           step_growth=1.5, cost=Margin(0.15), shift_penalty=2.0, progress=False)
    assert np.array_equal(got.targets, want.targets) and np.array_equal(got.steps, want.steps)
    fixed = optimize_inputs(model, x, y, lr=0.03, steps=6, margin=0.15, v_low=-0.9, v_high=0.9, batch_size=50,
                            cost=Margin(0.15), shift_penalty=2.0, progress=False)
    assert not np.array_equal(got.targets, fixed.targets)


def _fd_ce_grad(chip, xs, ys, h=1e-5):
    fd = np.zeros_like(xs)
    for j in range(xs.shape[1]):
        e = np.zeros_like(xs)
        e[:, j] = h
        fd[:, j] = (_ce(chip.predict(xs + e), ys) - _ce(chip.predict(xs - e), ys)) / (2 * h)
    return fd


def test_the_shift_penalty_pulls_the_second_step_back_towards_the_embedding(trained):
    """Two normalised steps written out: x1 = x0 − lr·n(∇C(x0)), x2 = x1 − lr·n(∇C(x1) + λ(x1 − x0)),
    with ∇C the central-difference gradient of the cross-entropy on the chip's outputs."""
    _, chip, x, y = trained
    wrong = np.flatnonzero(margins(chip.predict(x), y) < -0.05)[:4]
    xs, ys, lr, lam = x[wrong], y[wrong], 0.01, 30.0
    norm = lambda g: g / np.abs(g).max(1, keepdims=True)
    x1 = np.clip(xs - lr * norm(_fd_ce_grad(chip, xs, ys)), -1, 1)
    x2 = np.clip(x1 - lr * norm(_fd_ce_grad(chip, x1, ys) + lam * (x1 - xs)), -1, 1)
    res = optimize_inputs(chip, xs, ys, lr=lr, steps=2, margin=0.1, cost="cross_entropy", shift_penalty=lam,
                          progress=False)
    assert np.all(res.steps == 2)
    assert np.allclose(res.targets, x2, atol=0.05 * lr)
    free = optimize_inputs(chip, xs, ys, lr=lr, steps=2, margin=0.1, cost="cross_entropy", progress=False)
    assert not np.allclose(free.targets, x2, atol=0.05 * lr)          # the penalty changed the step
    with pytest.raises(ValueError, match="shift_penalty"):
        optimize_inputs(chip, xs, ys, shift_penalty=-1.0, progress=False)
    with pytest.raises(ConfigError, match="input_optimization.shift_penalty"):
        validate_config({"name": "t", "data": {"dataset": "xor"}, "input_optimization": {"shift_penalty": -0.1}})
