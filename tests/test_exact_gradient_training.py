"""Training along the exact gradient (`compile(gradient='exact')`, `training.gradient: exact`):
one fit step against a step written out here along finite differences of the loss."""
import numpy as np
import pytest

from analog.losses import MSE
from analog.model import AnalogModel
from analog.native import NativeEngine
from analog.optimizers import SGD
from pipeline.config import ConfigError, load_config
from tests.analog_circuits import DEVICES, block, inputs


def _mean_loss(eng, c, G, x, labels, loss):
    s = eng.solve(G, x)
    assert s.converged.all()
    return loss(c.outputs(s.v), labels)[0].mean()


def _finite_difference_gradient(m, x, labels, loss) -> list[np.ndarray]:
    """∂(mean loss)/∂G for every conductance, by central differences of fresh solves."""
    c, G0 = m.circuit, [g.copy() for g in m.conductances]
    eng = NativeEngine(c, tol_v=1e-13)
    out = []
    for k, g in enumerate(G0):
        grad = np.zeros_like(g)
        for i, j in np.ndindex(g.shape):
            h = 1e-4 * g[i, j]
            Gp = [a.copy() for a in G0]; Gp[k][i, j] += h
            Gm = [a.copy() for a in G0]; Gm[k][i, j] -= h
            grad[i, j] = (_mean_loss(eng, c, Gp, x, labels, loss) - _mean_loss(eng, c, Gm, x, labels, loss)) / (2 * h)
        out.append(grad)
    return out


def test_an_exact_gradient_fit_step_is_the_sgd_step_along_finite_differences():
    m = block(hidden=(4,), device=DEVICES["shockley_rs"])
    loss = MSE(amplitude=0.3)
    x, labels = inputs(6, 3, seed=2), np.array([0, 1, 1, 0, 1, 0])
    fd = _finite_difference_gradient(m, x, labels, loss)
    G0 = [g.copy() for g in m.conductances]
    lr = 1.0
    # β large: an EP step would miss the finite differences by > 1e-3 (the next test)
    m.compile(loss=loss, optimizer=SGD(lr=lr), beta=3e-4, gradient="exact")
    logs = m.fit(x, labels, epochs=1, batch_size=len(x), verbose=0).history
    outside = 0
    for layer, g0, grad, g1 in zip(m.dense_layers, G0, fd, m.conductances):
        span = layer.g_max - layer.g_min
        step = -lr * span * span * grad            # SGD in device units: ΔG = −lr·span·(span·∂C/∂G)
        assert np.abs(step).max() > 1e-2 * span    # a step that moves the conductances
        outside += int(((g0 + step < layer.g_min) | (g0 + step > layer.g_max)).sum())
        want = np.clip(g0 + step, layer.g_min, layer.g_max)
        np.testing.assert_allclose(g1 - g0, want - g0, rtol=0, atol=2e-4 * np.abs(step).max())
    assert logs["clipped"] == [outside] and logs["ep_skipped"] == [0]

def test_ep_and_exact_steps_differ_only_by_eps_estimate():
    """With β small, EP's step is the exact one to within EP's bias; with β large it is not."""
    x, labels = inputs(6, 3, seed=2), np.array([0, 1, 1, 0, 1, 0])
    steps = {}
    for name, kw in (("exact", {"gradient": "exact"}), ("ep-small", {"beta": 1e-7}), ("ep-large", {"beta": 3e-4})):
        m = block(hidden=(4,), device=DEVICES["shockley_rs"])
        G0 = [g.copy() for g in m.conductances]
        m.compile(loss=MSE(amplitude=0.3), optimizer=SGD(lr=0.3), **kw)
        m.fit(x, labels, epochs=1, batch_size=len(x), verbose=0)
        steps[name] = np.concatenate([(g1 - g0).ravel() for g0, g1 in zip(G0, m.conductances)])
    err = {k: np.linalg.norm(steps[k] - steps["exact"]) / np.linalg.norm(steps["exact"])
           for k in ("ep-small", "ep-large")}
    assert err["ep-small"] < 1e-3 < err["ep-large"]


def test_compile_checks_the_gradient_and_a_saved_model_keeps_it(tmp_path):
    m = block(hidden=(3,))
    with pytest.raises(ValueError, match="gradient='bogus'"):
        m.compile(gradient="bogus")
    with pytest.raises(ValueError, match="native engine"):
        m.compile(gradient="exact", engine="ngspice")
    m.compile(loss="mse", optimizer="adam", gradient="exact")
    m.fit(inputs(8, 3), np.arange(8) % 2, epochs=1, batch_size=4, verbose=0)
    back = AnalogModel.load(m.save(tmp_path / "m"))
    assert back.gradient == "exact"
    assert all(np.array_equal(a, b) for a, b in zip(back.conductances, m.conductances))


def test_training_gradient_in_the_config():
    from pipeline.system.analog_block import model_from_config
    cfg = load_config("experiments/iris.yaml", ["training.gradient=exact", "analog.hidden=[4]"])
    assert model_from_config(cfg, 4, 3).gradient == "exact"
    assert model_from_config(load_config("experiments/iris.yaml", ["analog.hidden=[4]"]), 4, 3).gradient == "ep"
    with pytest.raises(ConfigError, match="training.gradient"):
        load_config("experiments/iris.yaml", ["training.gradient=backprop"])
    with pytest.raises(ConfigError, match="training.gradient='exact'.*native"):
        load_config("experiments/iris.yaml", ["training.gradient=exact", "training.engine=ngspice"])
