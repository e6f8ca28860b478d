"""Pulsed updates: levels reached, asymmetry, soft bounds and saturation, cycle-to-cycle
noise, and the optimiser that turns EP updates into pulses."""
from types import SimpleNamespace

import numpy as np
import pytest

from analog.hardware import DeviceSpec, PulsedOptimizer, resolve_hardware
from analog.hardware.pulses import apply_pulses
from analog.optimizers import Optimizer


def dev(**kw):
    return resolve_hardware("ideal", {"device": kw}).device


def test_pulses_reach_every_level_and_saturate():
    d = dev(levels=5)
    w, seen = np.zeros(1), []
    for _ in range(6):
        w, hits = apply_pulses(d, w, np.array([1]), None)
        seen.append(float(w[0]))
    assert seen == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    for _ in range(6):
        w, _ = apply_pulses(d, w, np.array([-1]), None)
        seen.append(float(w[0]))
    assert sorted(set(seen)) == [0.0, 0.25, 0.5, 0.75, 1.0]
    # constant-step continuous device: n_states pulses cross the range, then hard saturation
    d = dev(dw_min=0.125, gamma=0.0)   # exact in binary: 8 pulses cross the range
    w, hits = apply_pulses(d, np.zeros(3), np.array([8, 13, 4]), None)
    np.testing.assert_array_equal(w, [1.0, 1.0, 0.5])
    assert hits == 5   # the second device's 5 pulses beyond 8 all hit the bound


def test_asymmetry_up_versus_down():
    d = dev(dw_min=0.01, gamma=0.0, up_down=0.3)
    w = np.full(2, 0.5)
    w, _ = apply_pulses(d, w, np.array([1, -1]), None)
    up, down = w[0] - 0.5, 0.5 - w[1]
    np.testing.assert_allclose([up, down], [0.013, 0.007], rtol=1e-12)
    assert up / down == pytest.approx(1.3 / 0.7)


def test_soft_bounds_geometric_approach_never_exceeds_the_bound():
    d = dev(dw_min=0.05, gamma=1.0)
    n = np.arange(0, 200, 10)
    w, _ = apply_pulses(d, np.zeros(len(n)), n, None)
    np.testing.assert_allclose(1 - w, (1 - 0.05) ** n, rtol=1e-9)
    assert np.all(w < 1)
    w2, _ = apply_pulses(d, np.ones(len(n)), -n, None)
    np.testing.assert_allclose(w2, (1 - 0.05) ** n, rtol=1e-9)


def test_cycle_to_cycle_noise_statistics():
    d = dev(dw_min=0.01, gamma=1.0, c2c=0.5)
    w0 = np.full(100_000, 0.3)
    w, _ = apply_pulses(d, w0, np.ones(len(w0), int), np.random.default_rng(0))
    step = w - w0
    expect = 0.01 * (1 - 0.3)
    assert abs(step.mean() / expect - 1) < 5 * 0.5 / np.sqrt(len(w0))
    assert abs(step.std() / (0.5 * expect) - 1) < 5 / np.sqrt(2 * len(w0))


def layer(G, g_min=1e-7, g_max=2e-5):
    return SimpleNamespace(G=np.array(G, float), g_min=g_min, g_max=g_max, lr_scale=1.0, trainable=True, name="d")


def test_optimizer_turns_an_update_into_integer_pulses():
    d = DeviceSpec(g_min=1e-7, g_max=2e-5, dw_min=0.01, gamma=0.0)
    opt = PulsedOptimizer(d, lr=1.0, base="sgd")
    assert isinstance(opt, Optimizer)
    span = 2e-5 - 1e-7
    L = layer([[0.5 * span + 1e-7, 0.5 * span + 1e-7, 1e-7]])
    # SGD step: ΔG = −lr·span·(grad·span) → Δw = −grad·span²/span = −grad·span
    dw_wanted = np.array([[0.034, -0.026, -0.05]])
    grad = -dw_wanted / span
    hits = opt.apply([L], [grad])
    w = (L.G - 1e-7) / span
    np.testing.assert_allclose(w, [[0.53, 0.47, 0.0]], atol=1e-12)   # 3 up, 3 down, 5 down blocked at 0
    assert opt.last_pulses == 3 + 3 + 5 and hits == 5
    man = PulsedOptimizer(d, lr=1.0, rule="manhattan")
    L = layer([[0.5 * span + 1e-7, 0.5 * span + 1e-7, 0.5 * span + 1e-7]])
    man.apply([L], [-np.array([[0.034, -0.026, 0.0]]) / span])
    np.testing.assert_allclose((L.G - 1e-7) / span, [[0.51, 0.49, 0.5]], atol=1e-12)


def test_optimizer_keeps_conductances_in_the_layer_range():
    spec = resolve_hardware("pcm")
    opt = PulsedOptimizer(spec, lr=0.5, base="adam", seed=1)
    rng = np.random.default_rng(0)
    L = layer(rng.uniform(1e-6, 1e-4, (6, 5)), g_min=1e-6, g_max=1e-4)
    for _ in range(30):
        opt.apply([L], [rng.standard_normal((6, 5))])
        assert L.G.min() >= 1e-6 and L.G.max() <= 1e-4
    with pytest.raises(ValueError, match="rule"):
        PulsedOptimizer(spec, rule="sign")


def test_stochastic_rounding_gives_the_wanted_mean_number_of_pulses():
    d = DeviceSpec(g_min=1e-7, g_max=2e-5, levels=4)          # one pulse = one level = 1/3
    span = 2e-5 - 1e-7
    opt = PulsedOptimizer(d, lr=1.0, rule="stochastic", seed=0)
    L = layer(np.full((200, 500), 1e-7 + span / 3))
    opt.apply([L], [np.full((200, 500), -0.1 / span)])        # wanted Δw = 0.1 = 0.3 levels
    w = (L.G - 1e-7) / span
    moved = np.isclose(w, 2 / 3)
    assert np.all(moved | np.isclose(w, 1 / 3))
    assert abs(moved.mean() - 0.3) < 5 * np.sqrt(0.3 * 0.7 / moved.size)
    plain = PulsedOptimizer(d, lr=1.0)
    L = layer(np.full((2, 2), 1e-7 + span / 3))
    plain.apply([L], [np.full((2, 2), -0.1 / span)])          # rounds to 0 pulses
    np.testing.assert_array_equal(L.G, 1e-7 + span / 3)


def test_a_pulse_moves_a_device_with_levels_exactly_one_level():
    """pcm with 16 levels: asymmetry, soft bounds and cycle-to-cycle noise describe the
    continuous device; on the level grid every pulse is one level, up or down."""
    d = resolve_hardware("pcm", {"device": {"levels": 16}}).device
    rng = np.random.default_rng(0)
    k0 = rng.integers(0, 16, 20_000)
    n = rng.integers(-20, 21, k0.size)
    w, hits = apply_pulses(d, k0 / 15, n, rng)
    k = w * 15
    np.testing.assert_allclose(k, np.rint(k), atol=1e-9)                # on the grid
    np.testing.assert_array_equal(np.rint(k), np.clip(k0 + n, 0, 15))    # n levels, stopped at the ends
    assert hits == int(np.maximum(k0 + n - 15, 0).sum() + np.maximum(-(k0 + n), 0).sum())
    w1, _ = apply_pulses(d, k0[k0 < 15] / 15, np.ones(int((k0 < 15).sum()), int), rng)
    np.testing.assert_allclose(w1 * 15 - k0[k0 < 15], 1.0, atol=1e-9)   # one up pulse: one level, always


def test_optimizer_moves_devices_with_levels_on_the_device_level_grid():
    """The layer range (0.1–20 µS) is not the device's: with pcm (0.1–25 µS, k = 1.25) the
    device levels in layer units are (0.1 µS + i·24.9 µS/15)/1.25; pulses move along them."""
    spec = resolve_hardware("pcm", {"device": {"levels": 16}})
    g_min, g_max, k = 0.1e-6, 25e-6, 25e-6 / 20e-6
    levels = (g_min + np.arange(16) * (g_max - g_min) / 15) / k            # layer units
    rng = np.random.default_rng(1)
    i0 = rng.integers(1, 16, (40, 50))                                      # level 0 (0.08 µS) is below the layer's range
    L = layer(levels[i0], g_min=1e-7, g_max=2e-5)
    opt = PulsedOptimizer(spec, lr=1.0, base="sgd")
    n_wanted = rng.integers(-4, 5, i0.shape)
    span_layer = 2e-5 - 1e-7
    # SGD: ΔG = −lr·span·(grad·span); one level is (g_max − g_min)/(15 k) in layer units
    grad = -(n_wanted * (g_max - g_min) / (15 * k)) / span_layer**2
    opt.apply([L], [grad])
    i = np.abs(L.G[..., None] - levels).argmin(-1)
    np.testing.assert_allclose(L.G, levels[i], rtol=1e-9)                   # every device on a device level
    np.testing.assert_array_equal(i, np.clip(i0 + n_wanted, 1, 15))        # moved by the pulses asked for
    assert L.G.min() >= 1e-7 and L.G.max() <= 2e-5
