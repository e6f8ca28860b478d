"""Ternary and binary weights on differential pairs (rram-2t2r): where the pairs sit, what a
programmed pair conducts, the bit error statistics, and the hidden-weight threshold rule,
each against a computation written out here."""
import dataclasses
import json
import math

import numpy as np
import pytest

from analog.builders import build_network
from analog.specs import BlockSpec
from analog.hardware import Chip, PairOptimizer, finetune, pair_maps, program, resolve_hardware
from analog.hardware.pairs import PairMap, device_targets, read_flips, realised_states, states_of

ON, OFF = 40e-6, 2e-6          # the rram-2t2r preset's two states


def binomial_ok(k: int, n: int, p: float, z: float = 5.0) -> bool:
    """k successes of n trials within z standard deviations of n·p (z = 5: a false alarm
    about once in 1.7 million runs)."""
    return abs(k - n * p) <= z * math.sqrt(n * p * (1 - p)) + 1


def spec(**device):
    base = resolve_hardware("rram-2t2r")
    return dataclasses.replace(base, device=dataclasses.replace(base.device, **device))


def one_layer(features=2, classes=1):
    """Inputs ± and bias ±1 straight into the differential outputs: one crossbar."""
    return build_network(features, classes, BlockSpec(layers=(), bias_levels=(1.0, -1.0), gmin=1e-18))


def test_pairs_sit_on_the_input_copies_and_on_the_differential_outputs():
    m = build_network(3, 2, BlockSpec.dense((4,)))
    first, out = pair_maps(m.circuit)
    # dense1 columns: x0+ x1+ x2+ x0− x1− x2− bias(+1) bias(−1)
    assert (first.axis, first.plus.tolist(), first.minus.tolist()) == (1, [0, 1, 2, 6], [3, 4, 5, 7])
    # dense2 takes amplifier outputs (single-ended): rows pair as (o0+, o0−), (o1+, o1−)
    assert (out.axis, out.plus.tolist(), out.minus.tolist()) == (0, [0, 2], [1, 3])


def test_a_layer_that_cannot_hold_pairs_is_refused_naming_the_key_and_layer():
    m = build_network(3, 2, BlockSpec.dense((4, 4)))
    with pytest.raises(ValueError) as err:
        program(m, "rram-2t2r", seed=0)
    msg = str(err.value)
    assert msg.startswith("hardware.device.pairs='ternary': layer 'dense2'") and "\n" not in msg
    unpaired_bias = build_network(3, 2, BlockSpec.dense((4,), bias_levels=(1.0,)))
    with pytest.raises(ValueError, match="layer 'dense1' cannot hold"):
        program(unpaired_bias, "rram-2t2r-binary", seed=0)


def test_programmed_pairs_give_the_hand_computed_outputs():
    """One crossbar, weights by hand: w = [[+1, −1, 0]] over (x0, x1, bias) for output o+ and
    [[0, +1, +1]] for o−. A row node of a purely resistive crossbar sits at the conductance-
    weighted mean of its inputs."""
    m = one_layer()
    pm = pair_maps(m.circuit)[0]
    w = np.array([[1, -1, 0], [0, 1, 1]])
    on_p, on_m = w > 0, w < 0
    g = lambda on: np.where(on, ON, OFF)                          # noqa: E731
    k = ON / m.dense_layers[0].g_max
    target = pm.join(g(on_p), g(on_m), np.zeros((2, 6))) / k      # layer units
    m.set_conductances([np.clip(target, m.dense_layers[0].g_min, m.dense_layers[0].g_max)])
    chip = program(m, spec(bit_error=0.0, read_bit_error=0.0), seed=0)
    assert np.array_equal(realised_states(chip.spec.device, pm, chip.G_prog[0]), w)
    x = np.array([[0.3, -0.7], [-0.2, 0.5]])
    # by hand: inputs (x0, x1, 1) and their mirrors; G+ on the + copy, G− on the − copy
    v = np.zeros((2, 2))
    for r in range(2):
        gp, gm = g(on_p[r]), g(on_m[r])
        for b in range(2):
            xs = np.array([x[b, 0], x[b, 1], 1.0])
            v[b, r] = (gp @ xs - gm @ xs) / (gp.sum() + gm.sum())
    np.testing.assert_allclose(chip.predict(x), (v[:, 0] - v[:, 1])[:, None], atol=1e-9)


def test_programming_bit_errors_follow_the_configured_rate():
    rng = np.random.default_rng(1)
    n_rows, n_pairs, p = 200, 250, 0.01
    states = rng.integers(-1, 2, (n_rows, n_pairs))
    pm = PairMap("x", 1, np.arange(n_pairs), np.arange(n_pairs, 2 * n_pairs))
    intended = pm.join(np.where(states > 0, ON, OFF), np.where(states < 0, ON, OFF), np.zeros((n_rows, 2 * n_pairs)))
    d = spec(bit_error=p).device
    G, got_states = device_targets(d, pm, intended, np.random.default_rng(2))
    assert np.array_equal(got_states, states)                     # the states are read back exactly
    shares = [(states == s).mean() for s in (-1, 0, 1)]
    assert all(binomial_ok(int(sh * states.size), states.size, 1 / 3) for sh in shares)
    flipped = int((G != intended).sum())
    assert binomial_ok(flipped, G.size, p)
    # a pair keeps its state only when neither of its two devices flipped: 1 − (1 − p)²
    changed = int((realised_states(d, pm, G) != states).sum())
    assert binomial_ok(changed, states.size, 1 - (1 - p) ** 2)
    # a ±1 pair turns into its opposite only when both devices flip: p²
    signed = states != 0
    inverted = int((realised_states(d, pm, G)[signed] == -states[signed]).sum())
    assert binomial_ok(inverted, int(signed.sum()), p * p)


def test_read_bit_errors_are_fresh_on_every_read_and_at_the_configured_rate():
    d = spec(read_bit_error=0.02).device
    G = np.where(np.random.default_rng(3).random((300, 300)) < 0.4, ON, OFF)
    rng = np.random.default_rng(4)
    a, b = read_flips(d, G, rng), read_flips(d, G, rng)
    for r in (a, b):
        wrong = r != G
        assert binomial_ok(int(wrong.sum()), G.size, 0.02)
        assert np.all(r[wrong] == np.where(G[wrong] == ON, OFF, ON))   # misread as the other state
    both = int(((a != G) & (b != G)).sum())
    assert binomial_ok(both, G.size, 0.02 ** 2)                     # independent reads


def test_a_chip_of_pairs_realises_the_ternarised_block_with_its_error_rate():
    m = build_network(20, 10, BlockSpec.dense((60,), seed=3))
    maps = pair_maps(m.circuit)
    p = 0.02
    chip = program(m, spec(bit_error=p, read_bit_error=0.0), seed=5)
    n_dev, wrong = 0, 0
    for G, G_dev, pm, k in zip(m.conductances, chip.G_prog, maps, chip.scale):
        gp, gm = pm.split(G)
        w = gp - gm
        intended = np.sign(w) * (np.abs(w) / np.abs(w).max() > 0.5)     # the preset's threshold, by hand
        on_p, on_m = intended > 0, intended < 0
        want = pm.join(np.where(on_p, ON, OFF), np.where(on_m, ON, OFF), G)
        assert set(np.unique(G_dev)) <= {ON, OFF}
        n_dev += G_dev.size
        wrong += int((G_dev != want).sum())
    assert 0 < wrong and binomial_ok(wrong, n_dev, p)
    reads = chip.device_conductances_at(0.0)                         # default read rate 1e-4: few misreads
    assert sum(int((r != g).sum()) for r, g in zip(reads, chip.G_prog)) <= 20


class _Layer:
    def __init__(self, G, g_min=1e-7, g_max=2e-5):
        self.G, self.g_min, self.g_max, self.lr_scale, self.trainable = G, g_min, g_max, 1.0, True


def test_a_pair_is_reprogrammed_exactly_when_its_hidden_weight_crosses_the_threshold():
    on, off = 2e-5, 1e-6                           # layer units: device / k, k = 40 µS / 20 µS
    pm = PairMap("x", 1, np.array([0, 1, 2, 3]), np.array([4, 5, 6, 7]))
    states0 = np.array([[1, 0, -1, 0]])
    G0 = pm.join(np.where(states0 > 0, on, off), np.where(states0 < 0, on, off), np.zeros((1, 8)))
    G0[0, 3] = on                                  # pair 3 carries a bit error: (on, off) where 0 was meant
    opt = PairOptimizer(spec(bit_error=0.0), [pm], lr=1.0, base="sgd", threshold=0.5)
    layer = _Layer(G0.copy())
    # hidden weights start at the pairs' weights over the largest: [1, 0, −1, 1]
    np.testing.assert_allclose(opt.hidden(0, layer), [[1.0, 0.0, -1.0, 1.0]])
    # ∂C/∂h = (on − off)/2 · (∂C/∂G+ − ∂C/∂G−); choose ∂C/∂G+ only, to move h by −Δ
    dh = np.array([[0.4, -0.6, -0.7, 0.3]])        # wanted h changes
    grad = np.zeros((1, 8))
    grad[0, :4] = -dh[0] / (0.5 * (on - off))
    opt.apply([layer], [grad])
    # by hand: clip([1, 0, −1, 1] + [0.4, −0.6, −0.7, 0.3], −1, 1)
    np.testing.assert_allclose(opt.state["hidden"][0], [[1.0, -0.6, -1.0, 1.0]])
    # states: 1 → 1 (kept), 0 → −1 (|−0.6| > 0.5: crossed), −1 → −1, pair 3: 1 → 1 (kept)
    want = G0.copy()
    want[0, 1], want[0, 5] = off, on               # only pair 1 is rewritten
    np.testing.assert_array_equal(layer.G, want)
    assert layer.G[0, 3] == on                     # the uncrossed pair keeps its bit error
    assert opt.last_pulses == 2 and opt.reprogrammed == 1
    # a step that leaves every hidden weight on its side writes nothing
    grad[0, :4] = -np.array([-0.05, 0.05, 0.05, -0.05]) / (0.5 * (on - off))
    before = layer.G.copy()
    opt.apply([layer], [grad])
    np.testing.assert_array_equal(layer.G, before)
    assert opt.last_pulses == 0


def test_binary_pairs_flip_when_the_hidden_weight_changes_sign():
    on, off = 2e-5, 1e-6
    pm = PairMap("x", 0, np.array([0]), np.array([1]))
    G0 = np.array([[on, off, on], [off, on, off]])  # rows (G+, G−) of three pairs: +1, −1, +1
    opt = PairOptimizer(spec(pairs="binary", bit_error=0.0), [pm], lr=1.0, base="sgd")
    layer = _Layer(G0.copy())
    grad = np.zeros((2, 3))
    grad[0] = np.array([1.2, -0.3, 0.9]) / (0.5 * (on - off))      # h: 1 → −0.2, −1 → −0.7, 1 → 0.1
    opt.apply([layer], [grad])
    np.testing.assert_allclose(opt.state["hidden"][0], [[-0.2, -0.7, 0.1]])
    np.testing.assert_array_equal(layer.G, [[off, off, on], [on, on, off]])


def test_the_optimiser_and_the_chip_round_trip(tmp_path):
    m = build_network(3, 2, BlockSpec.dense((4,)))
    chip = program(m, "rram-2t2r", seed=1)
    chip.save(tmp_path / "chip")
    again = Chip.load(tmp_path / "chip")
    assert again.spec == chip.spec and all(np.array_equal(a, b) for a, b in zip(again.G_prog, chip.G_prog))
    opt = PairOptimizer(chip.spec, pair_maps(m.circuit), lr=0.03, seed=4)
    twin = PairOptimizer.from_config(json.loads(json.dumps(opt.get_config())))
    assert twin.get_config() == opt.get_config()


def test_ep_trains_ternary_pairs_on_the_chip():
    """A toy task (the sign of the first feature) learnt in the loop on a ternary chip."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (64, 3))
    y = (x[:, 0] > 0).astype(int)
    m = build_network(3, 2, BlockSpec.dense((6,), seed=2))
    m.compile(loss="mse", amplitude=0.5, optimizer="adam", beta=1e-7)
    chip = program(m, "rram-2t2r", seed=0)
    before = float((chip.predict(x).argmax(1) == y).mean())
    opt = PairOptimizer(chip.spec, pair_maps(m.circuit), lr=0.05, seed=0)
    hist = finetune(chip, x, y, loss=m.loss, beta=m.beta, optimizer=opt, epochs=8, batch_size=8)
    after = float((chip.predict(x).argmax(1) == y).mean())
    assert opt.reprogrammed > 0 and sum(hist["pulses"]) == 2 * opt.reprogrammed
    assert after >= 0.9 and after > before + 0.2
    assert set(np.unique(np.concatenate([g.ravel() for g in chip.G_prog]))) <= {ON, OFF}


@pytest.mark.parametrize("key,value,named", [("pairs", "quaternary", "hardware.device.pairs"),
                                             ("bit_error", 0.7, "hardware.device.bit_error"),
                                             ("read_bit_error", -0.1, "hardware.device.read_bit_error"),
                                             ("pair_threshold", 1.0, "hardware.device.pair_threshold"),
                                             ("levels", None, "hardware.device.levels")])
def test_bad_pair_fields_are_refused_naming_the_key(key, value, named):
    with pytest.raises(ValueError) as err:
        resolve_hardware("rram-2t2r", {"device": {key: value}})
    assert str(err.value).startswith(named)


@pytest.mark.parametrize("command", [["config", "show", "experiments/iris.yaml", "--set", "hardware.preset=rram-2t2r"],
                                     ["verify", "experiments/xor.yaml", "--hardware", "rram-2t2r"]])
def test_the_cli_refuses_a_block_that_cannot_hold_pairs_before_any_work(command, tmp_path):
    import os
    import subprocess
    import sys
    env = {**os.environ, "MIXSIG_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "pipeline", *command, "--set", "analog.hidden=[8, 8]"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "hardware.device.pairs='ternary': layer 'dense2' cannot hold" in lines[0]


def test_in_situ_training_in_the_pipeline_keeps_the_block_on_pair_states():
    from pipeline.system.analog_block import model_from_config
    from pipeline.config import validate_config
    import yaml
    raw = yaml.safe_load(open("experiments/iris.yaml"))
    raw["analog"]["hidden"] = [6]
    raw["hardware"] = {"preset": "rram-2t2r", "training": "in-situ"}
    cfg = validate_config(raw)
    model = model_from_config(cfg, 4, 3)
    assert isinstance(model.optimizer, PairOptimizer) and not model.optimizer.write_errors
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-1, 1, (16, 4)), rng.integers(0, 3, 16)
    on, off = 2e-5, 1e-6                           # layer units: 40 µS and 2 µS over k = 2
    d = resolve_hardware("rram-2t2r").device

    def holds_its_states():
        for layer, pm, states in zip(model.dense_layers, model.optimizer.pairs, model.optimizer.states()):
            assert np.all(np.isclose(layer.G, on) | np.isclose(layer.G, off))
            assert np.array_equal(realised_states(d, pm, layer.G * 2.0), states)   # device units: × k
    holds_its_states()                             # before the first solve: a pair block already
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    holds_its_states()
    assert model.optimizer.reprogrammed > 0
