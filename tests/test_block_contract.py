"""The Block contract (analog/block.py): the ideal model and a programmed chip both satisfy
it; a chip's accuracy follows the one non-convergence rule, recomputed by hand from its
solves; its input gradient matches central differences of its own cost, written out here."""
from __future__ import annotations

import numpy as np
import pytest

from analog import AnalogModel, Block
from analog.hardware import Chip, program, resolve_hardware
from tests.analog_circuits import central_differences, four_input_block, mse_to_half_volt, steady_chip_spec


@pytest.fixture(scope="module")
def pair():
    model, x, y = four_input_block(40, data_seed=1)
    spec = steady_chip_spec()
    chip = program(model, spec, seed=1)
    yield model, chip, x, y
    chip.close()
    model.close()


def test_both_kinds_of_block_satisfy_the_protocol(pair):
    model, chip, _, _ = pair
    assert isinstance(model, Block) and isinstance(chip, Block)
    assert isinstance(model, AnalogModel) and isinstance(chip, Chip)
    assert not isinstance(object(), Block)


def test_chip_accuracy_is_the_argmax_of_its_solves_and_a_failed_solve_counts_wrong(pair):
    model, chip, x, y = pair
    G = chip.conductances_at(0.0)
    out = chip.circuit.outputs(chip.engine("native").solve(G, x).v)
    by_hand = float(np.mean(out.argmax(1) == y))
    assert chip.accuracy(x, y) == pytest.approx(by_hand)
    s = chip.scores(x, y)
    cost = mse_to_half_volt(out, y)
    assert s["accuracy"] == pytest.approx(by_hand) and s["loss"] == pytest.approx(cost.mean())
    assert s["nonconverged"] == 0 and s["samples"] == len(y)
    # a solve that fails: its sample is wrong even where its (NaN) outputs would not say so
    real = chip.solve
    chip.solve = lambda xb, t=0.0: _fail_first(real(xb, t))
    try:
        right = out.argmax(1) == y
        expected = (right[1:].sum()) / len(y)
        assert chip.accuracy(x, y) == pytest.approx(expected)
        assert chip.scores(x, y)["nonconverged"] == 1
    finally:
        del chip.solve


def _fail_first(sol):
    sol.converged = np.asarray(sol.converged, bool).copy()
    sol.converged[0] = False
    return sol


@pytest.mark.parametrize("loss", ["cross_entropy", None])
def test_chip_input_gradient_matches_finite_differences_of_its_own_cost(pair, loss):
    model, chip, x, y = pair
    xs, ys = x[:4], y[:4]

    def cost(xv):
        out = chip.circuit.outputs(chip.solve(xv).v)
        if loss is None:                                                  # the trained model's MSE
            return mse_to_half_volt(out, ys)
        z = out / 0.1                                                     # softmax cross-entropy, T = 0.1 V
        return np.log(np.exp(z).sum(1)) - z[np.arange(len(ys)), ys]

    fd = central_differences(cost, xs)
    exact = chip.gradients(xs, ys, method="exact", loss=loss).input_grad
    assert np.allclose(exact, fd, rtol=1e-4, atol=1e-6 * np.abs(fd).max())
    ep = chip.gradients(xs, ys, method="ep", input_grad=True, loss=loss).input_grad
    cos = (ep * fd).sum(1) / np.linalg.norm(ep, axis=1) / np.linalg.norm(fd, axis=1)
    assert np.all(cos > 0.99), cos
    ideal = model.gradients(xs, ys, method="exact", loss=loss).input_grad
    assert not np.allclose(exact, ideal, rtol=1e-2)                         # the chip's, not the ideal block's


def test_a_chip_without_a_compiled_model_names_what_is_missing(pair):
    model, chip, x, y = pair
    bare = Chip(model.circuit, chip.spec, chip.seed, chip.G_prog, chip.nu, chip.stuck, chip.scale, chip.realised,
                chip.layer_names, model=None)
    with pytest.raises(ValueError, match="compiled model"):
        bare.gradients(x[:2], y[:2])
    assert np.isnan(bare.scores(x, y)["loss"]) and 0 <= bare.accuracy(x, y) <= 1


def test_a_chip_read_at_a_time_is_a_block_that_reads_at_that_time():
    """chip.at(t): every call reads the conductances drifted to t (PCM drift, no read noise),
    checked against the chip's own methods given t and against the drift-free read."""
    model, x, y = four_input_block(30, data_seed=2, seed=4)
    spec = resolve_hardware("pcm", {"device": {"read_noise": "none"}, "drift_compensation": False})
    chip = program(model, spec, seed=2)
    try:
        year = 3.15e7
        aged = chip.at(year)
        assert isinstance(aged, Block) and aged.circuit is chip.circuit
        np.testing.assert_allclose(aged.predict(x), chip.predict(x, year), rtol=0, atol=1e-12)
        assert not np.allclose(aged.predict(x), chip.predict(x, 0.0), atol=1e-6)   # drift moved the outputs
        g_at, g_chip = aged.gradients(x, y, input_grad=True), chip.gradients(x, y, input_grad=True, t=year)
        for a, b in zip(g_at.grads, g_chip.grads):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-18)
        assert aged.accuracy(x, y) == pytest.approx(chip.accuracy(x, y, year))
    finally:
        chip.close()
        model.close()
