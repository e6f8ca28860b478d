"""Input optimisation: gradient descent on the analog block's input voltages (step 4)."""
from __future__ import annotations

import numpy as np
import pytest

from analog import input_optimization as io
from analog.input_optimization import margins, optimize_inputs
from tests.analog_circuits import trained_three_class_block


@pytest.fixture(scope="module")
def trained():
    """A small block trained a little on a separable 3-class problem (some samples wrong)."""
    return trained_three_class_block(n=240, hidden=12, epochs=2)


def test_margins():
    y = np.array([[0.3, 0.1, -0.2], [0.0, 0.5, 0.4]])
    assert np.allclose(margins(y, np.array([0, 2])), [0.2, -0.1])


def test_reaches_targets_inside_the_box(trained):
    model, x, y = trained
    res = optimize_inputs(model, x, y, lr=0.05, steps=40, margin=0.2, v_low=-0.9, v_high=0.9, progress=False)
    m = res.metrics()
    assert 0 < m["initially_reached_fraction"] < 1          # a real task: some wrong, some right
    assert m["reached_fraction"] > m["initially_reached_fraction"] + 0.05
    assert m["newly_reached_fraction"] > 0.5
    assert res.targets.min() >= -0.9 and res.targets.max() <= 0.9
    # reached samples really have the margin at their targets (fresh solve)
    out = model.predict(res.targets[res.reached])
    assert np.all(margins(out, y[res.reached]) >= 0.2 - 1e-9)
    # samples already classified with the margin are not moved (except clipping into the box)
    kept = res.initially_reached
    assert np.allclose(res.targets[kept], np.clip(x[kept], -0.9, 0.9))
    assert np.all(res.steps[kept] == 0)
    assert m["max_shift"] >= m["mean_shift"] > 0
    assert np.all(res.steps <= 40)
    assert set(m) >= {"reached_fraction", "mean_shift", "max_shift", "seconds", "samples_per_second"}


def test_ep_gradient_matches_exact(trained):
    model, x, y = trained
    a = optimize_inputs(model, x[:60], y[:60], lr=0.05, steps=10, margin=0.05, progress=False, method="ep")
    b = optimize_inputs(model, x[:60], y[:60], lr=0.05, steps=10, margin=0.05, progress=False, method="exact")
    assert np.array_equal(a.reached, b.reached)
    assert np.allclose(a.targets, b.targets, atol=1e-3)


def test_only_active_samples_are_solved_and_batching_is_invisible(trained, monkeypatch):
    model, x, y = trained
    sizes = []
    real = io._gradient_and_outputs

    def spy(model_, xs, labels, method, v0=None, cost=None):
        sizes.append(len(xs))
        return real(model_, xs, labels, method, v0, cost)

    monkeypatch.setattr(io, "_gradient_and_outputs", spy)
    full = optimize_inputs(model, x, y, lr=0.05, steps=15, margin=0.05, batch_size=1000, progress=False)
    assert sizes[0] == len(x) and all(b <= a for a, b in zip(sizes, sizes[1:]))
    assert sizes[1] == int((~full.initially_reached).sum())
    chunked = optimize_inputs(model, x, y, lr=0.05, steps=15, margin=0.05, batch_size=37, progress=False)
    assert np.allclose(full.targets, chunked.targets, atol=1e-9)
    assert np.array_equal(full.reached, chunked.reached)


def test_zero_steps_only_measures(trained):
    model, x, y = trained
    res = optimize_inputs(model, x, y, steps=0, margin=0.05, progress=False)
    assert np.array_equal(res.targets, x) and np.array_equal(res.reached, res.initially_reached)


@pytest.mark.parametrize("update", ["gradient", "sign"])
def test_other_update_rules(trained, update):
    model, x, y = trained
    res = optimize_inputs(model, x, y, lr=0.5 if update == "gradient" else 0.02, steps=30, margin=0.05,
                          update=update, progress=False)
    assert res.reached.mean() > res.initially_reached.mean()


@pytest.mark.parametrize("kwargs, text", [
    ({"lr": 0.0}, "lr"), ({"steps": -1}, "steps"), ({"margin": -0.1}, "margin"),
    ({"v_low": 1.0, "v_high": 0.0}, "v_low"), ({"update": "newton"}, "update"), ({"method": "fd"}, "method"),
])
def test_bad_parameters(trained, kwargs, text):
    model, x, y = trained
    with pytest.raises(ValueError, match=text):
        optimize_inputs(model, x[:4], y[:4], progress=False, **kwargs)


def test_bad_shapes(trained):
    model, x, y = trained
    with pytest.raises(ValueError, match="analog block takes"):
        optimize_inputs(model, x[:, :5], y, progress=False)
    with pytest.raises(ValueError, match="labels"):
        optimize_inputs(model, x, y[:-1], progress=False)
