"""Optimisers and learning-rate schedules against steps computed by hand.

Convention (analog/optimizers.py): steps are taken on the normalised state
w = (G − g_min)/(g_max − g_min); the gradient in those units is ∂C/∂w = span·∂C/∂G, and
G ← clip(G − lr·span·direction(∂C/∂w), g_min, g_max), counting the clipped devices."""
import math
from types import SimpleNamespace

import numpy as np
import pytest

from analog.optimizers import SGD, Adam, Momentum, Schedule, get_optimizer

G_MIN, G_MAX = 1e-6, 3e-6           # span 2e-6 S


def _layer(G, lr_scale=1.0, trainable=True):
    return SimpleNamespace(G=np.array(G, dtype=float), g_min=G_MIN, g_max=G_MAX, lr_scale=lr_scale,
                           trainable=trainable, name="l")


G0 = [[1.5e-6, 2.0e-6], [2.9e-6, 1.1e-6]]
# ∂C/∂G (1/S) chosen so that ∂C/∂w = 2e-6·grad = [[0.2, -0.4], [-0.2, 0.6]]
GRAD = np.array([[1e5, -2e5], [-1e5, 3e5]])


def test_sgd_step_and_clipping_count():
    layer = _layer(G0)
    clipped = SGD(lr=0.5).apply([layer], [GRAD])
    # Δw = −0.5·[[0.2, −0.4], [−0.2, 0.6]] = [[−0.1, 0.2], [0.1, −0.3]]; ΔG = 2e-6·Δw
    expect = [[1.3e-6, 2.4e-6], [3.1e-6, 0.5e-6]]
    # 3.1e-6 > g_max and 0.5e-6 < g_min: clipped to the bounds, and counted
    np.testing.assert_allclose(layer.G, [[1.3e-6, 2.4e-6], [3.0e-6, 1.0e-6]], rtol=1e-12)
    assert clipped == 2
    assert expect[1][0] > G_MAX and expect[1][1] < G_MIN


def test_lr_scale_and_frozen_layers():
    a, b = _layer(G0, lr_scale=0.5), _layer(G0, trainable=False)
    SGD(lr=0.5).apply([a, b], [GRAD, GRAD])
    np.testing.assert_allclose(a.G[0], [1.4e-6, 2.2e-6], rtol=1e-12)      # half the step
    np.testing.assert_array_equal(b.G, G0)


def test_momentum_two_steps():
    layer = _layer(G0)
    g = GRAD * 0.1                       # ∂C/∂w = [[0.02, −0.04], [−0.02, 0.06]]
    opt = Momentum(lr=0.5, momentum=0.9)
    assert opt.apply([layer], [g]) == 0
    assert opt.apply([layer], [g]) == 1
    # m1 = d, m2 = 0.9·d + d = 1.9·d; total Δw = −0.5·(1 + 1.9)·d = −1.45·d; element [1, 1]
    # would reach 1.1e-6 − 2e-6·1.45·0.06 = 0.926e-6 < g_min on the second step: clipped
    d = np.array([[0.02, -0.04], [-0.02, 0.06]])
    np.testing.assert_allclose(layer.G, [[1.5e-6 - 2e-6 * 1.45 * 0.02, 2.0e-6 + 2e-6 * 1.45 * 0.04],
                                         [2.9e-6 + 2e-6 * 1.45 * 0.02, 1.0e-6]], rtol=1e-12)


def test_adam_two_steps_with_bias_correction():
    layer = _layer([[2.0e-6, 2.0e-6], [2.0e-6, 2.0e-6]])
    opt = Adam(lr=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    g1 = np.array([[1e5, -2e5], [5e4, 0.0]])        # ∂C/∂w = [[0.2, −0.4], [0.1, 0]]
    g2 = np.array([[2e5, -2e5], [-5e4, 1e5]])       # ∂C/∂w = [[0.4, −0.4], [−0.1, 0.2]]
    opt.apply([layer], [g1])
    # step 1: m̂ = g, v̂ = g², direction g/(|g| + ε) (0 where g = 0)
    d1 = np.array([[0.2 / (0.2 + 1e-8), -0.4 / (0.4 + 1e-8)], [0.1 / (0.1 + 1e-8), 0.0]])
    np.testing.assert_allclose(layer.G, 2e-6 - 0.01 * 2e-6 * d1, rtol=1e-12)
    opt.apply([layer], [g2])
    # step 2, element [0, 0]: m = 0.9·0.1·0.2 + 0.1·0.4 = 0.058, m̂ = 0.058/0.19;
    # v = 0.999·0.001·0.04 + 0.001·0.16 = 1.9996e-4, v̂ = 1.9996e-4/(1 − 0.999²)
    mhat = 0.058 / 0.19
    vhat = 1.9996e-4 / (1 - 0.999**2)
    d2_00 = mhat / (math.sqrt(vhat) + 1e-8)
    assert d2_00 == pytest.approx(0.96518, abs=1e-5)
    # element [1, 1]: first gradient 0, so m = 0.1·0.2 = 0.02, v = 0.001·0.04 = 4e-5
    d2_11 = (0.02 / 0.19) / (math.sqrt(4e-5 / (1 - 0.999**2)) + 1e-8)
    expect_00 = 2e-6 - 0.01 * 2e-6 * (d1[0, 0] + d2_00)
    expect_11 = 2e-6 - 0.01 * 2e-6 * d2_11
    assert layer.G[0, 0] == pytest.approx(expect_00, rel=1e-12)
    assert layer.G[1, 1] == pytest.approx(expect_11, rel=1e-12)
    assert opt.iterations == 2


@pytest.mark.parametrize("kind, kwargs, epochs, expect", [
    ("none", {}, [0, 5, 100], [1.0, 1.0, 1.0]),
    ("step", {"step_size": 3, "gamma": 0.5}, [0, 2, 3, 5, 6, 8, 9], [1, 1, 0.5, 0.5, 0.25, 0.25, 0.125]),
    ("cosine", {"total_epochs": 4}, [0, 1, 2, 3, 4, 7],
     [1.0, 0.5 + 0.5 * math.sqrt(0.5), 0.5, 0.5 - 0.5 * math.sqrt(0.5), 0.0, 0.0]),
])
def test_schedule_values(kind, kwargs, epochs, expect):
    s = Schedule(kind, **kwargs)
    assert [s(e) for e in epochs] == pytest.approx(expect, abs=1e-15)


def test_schedule_restart_and_its_effect_on_the_step():
    s = Schedule("cosine", total_epochs=4)
    s.restart(start_epoch=4, total_epochs=2)
    # from epoch 4 a fresh 2-epoch cosine: 1, ½, 0; epochs before the start count as its start
    assert [s(e) for e in (3, 4, 5, 6, 9)] == pytest.approx([1.0, 1.0, 0.5, 0.0, 0.0], abs=1e-15)
    opt = SGD(lr=0.5, schedule=s)
    opt.epoch = 5                         # half the learning rate
    layer = _layer(G0)
    opt.apply([layer], [GRAD * 0.1])
    np.testing.assert_allclose(layer.G[0], [1.5e-6 - 2e-6 * 0.25 * 0.02, 2.0e-6 + 2e-6 * 0.25 * 0.04], rtol=1e-12)


def test_config_and_state_round_trip_continue_identically():
    a = Adam(lr=0.02, beta_1=0.8, schedule=Schedule("step", 2, 0.5))
    la = _layer(G0)
    a.apply([la], [GRAD])
    a.epoch = 3
    cfg, (meta, arrays) = a.get_config(), a.get_state()
    assert cfg == {"name": "adam", "lr": 0.02, "beta_1": 0.8, "beta_2": 0.999, "epsilon": 1e-8,
                   "schedule": {"kind": "step", "step_size": 2, "gamma": 0.5, "total_epochs": 1, "start_epoch": 0}}
    b = Adam.from_config(cfg)
    b.set_state(meta, {k: v.copy() for k, v in arrays.items()})
    lb = _layer(la.G)
    a.apply([la], [GRAD * 0.3])
    b.apply([lb], [GRAD * 0.3])
    np.testing.assert_array_equal(la.G, lb.G)


def test_bad_optimiser_input():
    with pytest.raises(ValueError, match="lr"):
        SGD(lr=0.0)
    with pytest.raises(ValueError, match="momentum"):
        Momentum(momentum=1.0)
    with pytest.raises(ValueError, match="schedule='linear'"):
        Schedule("linear")
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        get_optimizer("rmsprop")
