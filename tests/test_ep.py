import numpy as np
import pytest

from analog.ep import ep_gradients, exact_gradients
from analog.losses import MSE, CrossEntropy
from analog.model import AnalogModel
from analog.native import NativeEngine
from tests.analog_circuits import DEVICES, block, inputs


def _loss_through_solver(eng, c, G, x, labels, loss):
    s = eng.solve(G, x)
    assert s.converged.all()
    return loss(c.outputs(s.v), labels)[0].mean()


@pytest.mark.parametrize("device", ["shockley_rs", "ideal", "mos"])
@pytest.mark.parametrize("loss", [MSE(amplitude=0.3), CrossEntropy(temperature=0.2)], ids=["mse", "ce"])
def test_exact_gradient_matches_finite_differences(device, loss):
    m = block(hidden=(5, 4), device=DEVICES[device], vref=0.6)
    c, G = m.circuit, [g.copy() for g in m.conductances]
    eng = NativeEngine(c, tol_v=1e-13)
    x, labels = inputs(6, 3, seed=2), np.array([0, 1, 1, 0, 1, 0])
    ex = exact_gradients(eng, c, G, x, labels, loss)
    rng = np.random.default_rng(0)
    for k in range(len(G)):
        for _ in range(3):
            i, j = rng.integers(G[k].shape[0]), rng.integers(G[k].shape[1])
            h = 1e-4 * G[k][i, j]
            Gp = [g.copy() for g in G]; Gp[k][i, j] += h
            Gm = [g.copy() for g in G]; Gm[k][i, j] -= h
            fd = (_loss_through_solver(eng, c, Gp, x, labels, loss) - _loss_through_solver(eng, c, Gm, x, labels, loss)) / (2 * h)
            assert abs(fd - ex.grads[k][i, j]) <= 1e-4 * abs(fd) + 1e-9 * np.abs(ex.grads[k]).max()
    # input voltages, per sample
    for j in range(3):
        h = 1e-5
        xp, xm = x.copy(), x.copy()
        xp[:, j] += h
        xm[:, j] -= h
        fd = (loss(c.outputs(eng.solve(G, xp).v), labels)[0] - loss(c.outputs(eng.solve(G, xm).v), labels)[0]) / (2 * h)
        np.testing.assert_allclose(ex.input_grad[:, j], fd, rtol=1e-4, atol=1e-8 * np.abs(fd).max())


def _relative_errors(m, x, labels, loss, betas, nudging):
    c, G = m.circuit, m.conductances
    eng = NativeEngine(c, tol_v=1e-14)
    ex = exact_gradients(eng, c, G, x, labels, loss)
    ref = np.concatenate([g.ravel() for g in ex.grads])
    out = []
    for beta in betas:
        ep = ep_gradients(eng, c, G, x, labels, loss, beta, nudging, input_grad=True)
        est = np.concatenate([g.ravel() for g in ep.grads])
        out.append((np.linalg.norm(est - ref) / np.linalg.norm(ref),
                     np.linalg.norm(ep.input_grad - ex.input_grad) / np.linalg.norm(ex.input_grad)))
    return np.array(out)


def test_ep_bias_falls_linearly_one_sided_and_quadratically_symmetric():
    m = block(hidden=(6,), device=DEVICES["shockley_rs"])
    x, labels = inputs(8, 3, seed=3), np.arange(8) % 2
    loss = MSE(amplitude=0.3)
    betas = np.array([1.6e-5, 8e-6, 4e-6, 2e-6])
    one = _relative_errors(m, x, labels, loss, betas, "positive")
    sym = _relative_errors(m, x, labels, loss, betas, "symmetric")
    slope_one = np.polyfit(np.log(betas), np.log(one[:, 0]), 1)[0]
    slope_sym = np.polyfit(np.log(betas), np.log(sym[:, 0]), 1)[0]
    assert 0.8 < slope_one < 1.2, one
    assert 1.7 < slope_sym < 2.3, sym
    assert np.all(sym[:, 0] < one[:, 0])
    # the input gradient too
    slope_in_sym = np.polyfit(np.log(betas), np.log(sym[:, 1]), 1)[0]
    assert 1.7 < slope_in_sym < 2.3, sym
    assert sym[-1, 0] < 1e-3 and sym[-1, 1] < 1e-3


def test_ep_skips_non_converged_samples():
    m = block(hidden=(5,), device=DEVICES["shockley"])
    eng = NativeEngine(m.circuit, max_iter=3)
    res = ep_gradients(eng, m.circuit, m.conductances, inputs(8, 3, scale=3.0), np.zeros(8, int), MSE(), 1e-7)
    assert res.info["failed"] == int((~res.used).sum()) > 0
    assert all(np.isfinite(g).all() for g in res.grads)


def _toy_data(n=64, seed=0):
    x = inputs(n, 3, scale=1.0, seed=seed)
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)


def test_fit_learns_reduces_loss_and_records_history():
    m = block(hidden=(8,), g=(1e-7, 2e-5))
    m.compile(loss="mse", optimizer="adam", beta=1e-7, amplitude=0.3)
    x, y = _toy_data()
    before = m.evaluate(x, y)["loss"]
    hist = m.fit(x, y, epochs=8, batch_size=8, validation_data=(x, y), verbose=0)
    assert hist.history["loss"][-1] < before
    assert hist.history["val_accuracy"][-1] >= 0.85
    for key in ("power_mean", "clipped", "nonconverged", "samples_per_second"):
        assert len(hist.history[key]) == 8
    assert "hidden_voltage" in hist.histograms[-1] and any(k.startswith("conductance/") for k in hist.histograms[-1])


def test_save_load_resumes_exactly(tmp_path):
    x, y = _toy_data()
    a = block(hidden=(6,), g=(1e-7, 2e-5))
    a.compile(loss="cross_entropy", optimizer="adam", beta=1e-7, temperature=0.2)
    a.fit(x, y, epochs=2, batch_size=16, verbose=0)
    a.save(tmp_path / "m")
    a.fit(x, y, epochs=2, batch_size=16, verbose=0)
    b = AnalogModel.load(tmp_path / "m")
    assert b.epoch == 2
    b.fit(x, y, epochs=2, batch_size=16, verbose=0)
    for ga, gb in zip(a.conductances, b.conductances):
        np.testing.assert_array_equal(ga, gb)


def test_bad_training_input_is_named():
    m = block(hidden=(4,))
    with pytest.raises(ValueError, match="beta"):
        m.compile(beta=0.0)
    m.compile(beta=1e-7)
    x, y = _toy_data(8)
    with pytest.raises(ValueError, match="labels range"):
        m.fit(x, y + 5, verbose=0)
    x[3, 0] = np.inf
    with pytest.raises(ValueError, match="sample 3"):
        m.fit(x, y, verbose=0)


def test_large_learning_rate_is_clipped_and_counted():
    m = block(hidden=(4,), g=(1e-7, 2e-5))
    from analog.optimizers import SGD
    m.compile(optimizer=SGD(lr=1e6), beta=1e-7)
    x, y = _toy_data(16)
    hist = m.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert hist.history["clipped"][0] > 0
    for layer in m.dense_layers:
        assert layer.G.min() >= layer.g_min and layer.G.max() <= layer.g_max
