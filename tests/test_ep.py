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


def _fd_conductance(eng, c, G, x, labels, loss, k, i, j):
    """Central difference of the mean loss in G[k][i, j], each side a fresh solve."""
    h = 1e-4 * G[k][i, j]
    Gp = [g.copy() for g in G]; Gp[k][i, j] += h
    Gm = [g.copy() for g in G]; Gm[k][i, j] -= h
    return (_loss_through_solver(eng, c, Gp, x, labels, loss) - _loss_through_solver(eng, c, Gm, x, labels, loss)) / (2 * h)


def _fd_input(eng, c, G, x, labels, loss, j, h=1e-5):
    """Central difference of each sample's loss in input feature j."""
    xp, xm = x.copy(), x.copy()
    xp[:, j] += h
    xm[:, j] -= h
    return (loss(c.outputs(eng.solve(G, xp).v), labels)[0] - loss(c.outputs(eng.solve(G, xm).v), labels)[0]) / (2 * h)


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
            fd = _fd_conductance(eng, c, G, x, labels, loss, k, i, j)
            assert abs(fd - ex.grads[k][i, j]) <= 1e-4 * abs(fd) + 1e-9 * np.abs(ex.grads[k]).max()
    # input voltages, per sample
    for j in range(3):
        fd = _fd_input(eng, c, G, x, labels, loss, j)
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


def test_ep_leaves_out_non_converged_samples():
    """With a Newton budget too small for some samples, the EP estimate must equal the
    estimate on the converged samples alone, computed with a fully converging engine."""
    m = block(hidden=(5,), device=DEVICES["shockley"])
    x, labels = inputs(40, 3, scale=3.0), np.arange(40) % 2
    res = ep_gradients(NativeEngine(m.circuit, max_iter=4), m.circuit, m.conductances, x, labels, MSE(), 1e-7,
                       input_grad=True)
    assert 0 < res.used.sum() < len(x)            # a real mix of converged and failed samples
    ref = ep_gradients(NativeEngine(m.circuit), m.circuit, m.conductances, x[res.used], labels[res.used], MSE(), 1e-7,
                       input_grad=True)
    for g, r in zip(res.grads, ref.grads):
        np.testing.assert_allclose(g, r, rtol=1e-6, atol=1e-9 * np.abs(r).max())
    np.testing.assert_allclose(res.input_grad[res.used], ref.input_grad, rtol=1e-6, atol=1e-9)
    assert np.isnan(res.input_grad[~res.used]).all()


def test_ep_matches_finite_differences_of_the_resolved_loss():
    """Symmetric EP at small β against central differences of the mean loss, each side a fresh
    solve of the circuit (no implicit differentiation involved)."""
    m = block(hidden=(4,), device=DEVICES["shockley_rs"])
    c, G = m.circuit, [g.copy() for g in m.conductances]
    eng = NativeEngine(c, tol_v=1e-13)
    x, labels, loss = inputs(6, 3, seed=4), np.array([0, 1, 1, 0, 1, 0]), MSE(amplitude=0.3)
    ep = ep_gradients(eng, c, G, x, labels, loss, 2e-7, "symmetric", input_grad=True)
    rng = np.random.default_rng(1)
    for k in range(len(G)):
        for _ in range(4):
            i, j = rng.integers(G[k].shape[0]), rng.integers(G[k].shape[1])
            fd = _fd_conductance(eng, c, G, x, labels, loss, k, i, j)
            assert abs(ep.grads[k][i, j] - fd) <= 1e-6 * np.abs(ep.grads[k]).max(), (k, i, j, fd, ep.grads[k][i, j])
    for j in range(3):
        fd = _fd_input(eng, c, G, x, labels, loss, j)
        np.testing.assert_allclose(ep.input_grad[:, j], fd, atol=1e-5 * np.abs(fd).max())


def _toy_data(n=64, seed=0):
    x = inputs(n, 3, scale=1.0, seed=seed)
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)


def test_fit_learns_reduces_loss_and_records_history():
    m = block(hidden=(8,), g=(1e-7, 2e-5))
    m.compile(loss="mse", optimizer="adam", beta=1e-7, amplitude=0.3)
    x, y = _toy_data()
    xv, yv = _toy_data(200, seed=11)            # held out: never seen in training
    before = m.evaluate(xv, yv)
    hist = m.fit(x, y, epochs=8, batch_size=8, validation_data=(xv, yv), verbose=0)
    assert hist.history["val_loss"][-1] < 0.7 * before["loss"]
    assert hist.history["val_accuracy"][-1] >= 0.85 > before["accuracy"]
    # the logged validation figures are those of a fresh solve: predictions recounted by hand
    yhat = m.predict(xv).argmax(1)
    assert hist.history["val_accuracy"][-1] == np.mean(yhat == yv)
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


# ---- model hooks, engine options, the non-convergence rule ---------------------------------
class _Scaled:
    """A perturbation: every conductance ×1.1; records the generator's first draw per batch."""

    def __init__(self):
        self.draws = []

    def perturb(self, G_list, layers, rng):
        assert all(not g.flags.writeable for g in G_list)      # the stored arrays cannot be touched
        assert [l.name for l in layers] == [l.name for l in self.layers]
        self.draws.append(rng.random())
        return [1.1 * g for g in G_list]


def test_perturbation_is_seen_by_ep_and_update_goes_to_stored_conductances():
    from analog.optimizers import SGD
    x, y = _toy_data(24)
    m = block(hidden=(4,), g=(1e-7, 2e-5))
    pert = _Scaled()
    pert.layers = m.dense_layers
    m.compile(loss="mse", optimizer=SGD(lr=0.05), beta=1e-7, perturbation=pert)
    G0 = [g.copy() for g in m.conductances]
    m.fit(x, y, epochs=1, batch_size=len(x), shuffle=False, verbose=0)
    # by hand: the EP gradient at 1.1·G0, one SGD step on G0 in normalised units, clipped
    ref = ep_gradients(NativeEngine(m.circuit), m.circuit, [1.1 * g for g in G0], x, y, MSE(), 1e-7, "symmetric")
    span = 2e-5 - 1e-7
    for g0, grad, g in zip(G0, ref.grads, m.conductances):
        np.testing.assert_allclose(g, np.clip(g0 - 0.05 * span * (grad * span), 1e-7, 2e-5), rtol=1e-9, atol=0)
    # the same (seed, epoch, batch) draws the same perturbation: a resumed run sees the same noise
    again = _Scaled()
    m2 = block(hidden=(4,), g=(1e-7, 2e-5))
    again.layers = m2.dense_layers
    m2.compile(loss="mse", optimizer=SGD(lr=0.05), beta=1e-7, perturbation=again)
    m2.fit(x, y, epochs=1, batch_size=len(x), shuffle=False, verbose=0)
    assert again.draws == pert.draws and len(pert.draws) == 1
    with pytest.raises(TypeError, match="perturb"):
        m.compile(perturbation=object())


def test_set_conductances_checks_everything_before_writing():
    m = block(hidden=(4,), g=(1e-7, 2e-5))
    G0 = [g.copy() for g in m.conductances]
    good = [np.full_like(g, 1e-6) for g in G0]
    bad_cases = [([good[0], np.full_like(G0[1], 3e-5)], "dense_.*outside the device range"),
                 ([good[0], np.full_like(G0[1], np.nan)], "not finite"),
                 ([good[0], good[1][:, :-1]], "shape"),
                 ([good[0]], "1 conductance arrays for 2")]
    for G, text in bad_cases:
        with pytest.raises(ValueError, match=text):
            m.set_conductances(G)
        for g0, g in zip(G0, m.conductances):      # nothing was written, not even the first layer
            assert np.array_equal(g0, g)
    m.set_conductances(good)
    assert all(np.array_equal(a, b) for a, b in zip(good, m.conductances))


def test_engine_options_as_dicts_are_cached_by_value():
    m = block(hidden=(3,))
    m.compile(engine="native", engine_options={"tol_v": 1e-9, "max_iter": 50})
    assert m.engine is m.get_engine("native", max_iter=50, tol_v=1e-9)
    assert (m.engine.tol_v, m.engine.max_iter) == (1e-9, 50)
    x, y = _toy_data(8)
    m.fit(x, y, epochs=1, batch_size=8, verbose=0)
    # nested dicts (ngspice's options): a canonical key, no TypeError; the pool is not started
    a = m.get_engine("ngspice", processes=1, options={"reltol": 1e-6, "gmin": 1e-12})
    b = m.get_engine("ngspice", options={"gmin": 1e-12, "reltol": 1e-6}, processes=1)
    assert a is b and a.options == {"reltol": 1e-6, "gmin": 1e-12}
    assert m.get_engine("ngspice", processes=1, options={"reltol": 1e-5}) is not a
    m.close()


def test_non_converged_samples_follow_one_rule_in_every_metric():
    """Accuracy over all samples with non-converged ones counted wrong; loss and power over the
    converged ones; the count and fraction reported (module docstring of analog.model)."""
    m = block(hidden=(5,), device=DEVICES["shockley"])
    x, y = inputs(40, 3, scale=3.0), np.arange(40) % 2
    m.compile(loss="mse", optimizer="sgd", beta=1e-7, engine_options={"max_iter": 4})
    conv = NativeEngine(m.circuit, max_iter=4).solve(m.conductances, x).converged
    assert 0 < conv.sum() < len(x)
    full = NativeEngine(m.circuit).solve(m.conductances, x)        # every sample, converged
    out = m.circuit.outputs(full.v)
    targets = np.where(np.arange(2)[None, :] == y[:, None], 0.5, -0.5)
    per_sample = 0.5 * ((out - targets) ** 2).sum(1)
    expect = {"accuracy": np.sum(conv & (out.argmax(1) == y)) / len(x), "loss": per_sample[conv].mean(),
              "power_mean": full.power[conv].mean(), "nonconverged": int((~conv).sum()),
              "nonconverged_fraction": (~conv).mean()}
    s = m.scores(x, y)
    for key, value in expect.items():
        assert s[key] == pytest.approx(value, rel=1e-7), key
    e = m.evaluate(x, y)
    assert (e["accuracy"], e["loss"], e["nonconverged"]) == (s["accuracy"], s["loss"], s["nonconverged"])
    # fit's training figures (one batch: the free phase sees the initial conductances)
    logs = m.fit(x, y, epochs=1, batch_size=len(x), shuffle=False, verbose=0).history
    for key in ("accuracy", "loss", "nonconverged", "nonconverged_fraction"):
        assert logs[key][0] == pytest.approx(expect[key], rel=1e-7), key
    assert logs["ep_skipped"][0] >= logs["nonconverged"][0]


@pytest.mark.parametrize("mode", ["ideal", "aware", "in-situ"])
def test_hardware_training_mode_from_the_config(mode):
    from analog.hardware import NoiseInjection, PulsedOptimizer, resolve_hardware
    from pipeline.system.analog_block import model_from_config
    from pipeline.config import load_config
    cfg = load_config("experiments/iris.yaml", ["hardware.preset=pcm", f"hardware.training={mode}",
                                                "hardware.device.g_max=2.5e-5", "analog.hidden=[4]"])
    m = model_from_config(cfg, 4, 3)
    spec = resolve_hardware("pcm", {"device": {"g_max": 2.5e-5}}).device
    if mode == "aware":
        assert isinstance(m.perturbation, NoiseInjection) and m.perturbation.device == spec
    else:
        assert m.perturbation is None
    assert isinstance(m.optimizer, PulsedOptimizer) == (mode == "in-situ")
    if mode == "in-situ":
        assert m.optimizer.device == spec and m.optimizer.lr == cfg.training.optimizer.lr
    x, y = inputs(16, 4, scale=1.0), np.arange(16) % 3
    m.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(m.history.history["loss"][0])


def test_gradient_report_on_a_programmed_chip():
    """verify's report measured on a chip: its varied circuit and one read of its conductances
    (the ideal block's gradients differ from the chip's; EP still matches the exact ones)."""
    from analog.hardware import program, resolve_hardware
    from analog.verify import gradient_report
    m = block(hidden=(5,), g=(1e-7, 2e-5))
    m.compile(beta=1e-7)
    x, y = inputs(12, 3, scale=1.0), np.arange(12) % 2
    chip = program(m, resolve_hardware("pcm", {"variation": {"is_sigma": 0.3, "offset_sigma": 0.01}}), seed=1)
    r = gradient_report(m, x, y, ngspice=False, chip=chip, t=3600.0)
    assert (r["hardware"], r["t"], r["max_abs_dv"]) == ("pcm", 3600.0, None)
    assert min(row["cos_symmetric"] for row in r["layers"].values()) > 0.9999
    assert r["input_gradient"]["cos_symmetric"] > 0.9999
    G = chip.conductances_at(3600.0, rng=np.random.default_rng(0))
    on_chip = exact_gradients(NativeEngine(chip.circuit), chip.circuit, G, x, y, m.loss).grads[0]
    ideal = exact_gradients(NativeEngine(m.circuit), m.circuit, m.conductances, x, y, m.loss).grads[0]
    assert np.linalg.norm(on_chip - ideal) > 1e-3 * np.linalg.norm(ideal)     # the chip is not the ideal block
    assert gradient_report(m, x, y, ngspice=False)["layers"] != r["layers"]    # and the report measured the chip


def test_cross_entropy_default_temperature_gradient_and_ep_on_a_trained_scale_block():
    """The default cross-entropy (T = 0.1 V, issue 13 part 5): its ∂C/∂y against central
    differences of its own cost, and symmetric EP at the main job's β = 1e-6 A against the
    exact implicit gradient on a block of the Fashion block's kind (Shockley IS = 1e-12 A,
    biases ±0.3 V, gain 4, 1e-7…2e-5 S) with PCA-like inputs (σ ≈ 0.33 V), where T = 0.1 V
    makes ∂C/∂y up to 10 per volt and the nudging currents 10× those of the MSE."""
    from analog.builders import build_dense_network
    loss = CrossEntropy()
    assert loss.temperature == 0.1
    rng = np.random.default_rng(3)
    y, labels = rng.normal(0, 0.2, (5, 10)), np.array([0, 3, 9, 3, 5])
    _, g = loss(y, labels)
    h = 1e-6
    for k in range(10):
        yp, ym = y.copy(), y.copy()
        yp[:, k] += h
        ym[:, k] -= h
        np.testing.assert_allclose(g[:, k], (loss(yp, labels)[0] - loss(ym, labels)[0]) / (2 * h), rtol=1e-6, atol=1e-8)
    m = build_dense_network(12, 10, hidden=(16,), seed=1)
    m.compile(loss="cross_entropy", optimizer="adam", beta=1e-6)
    assert m.loss.temperature == 0.1
    x = np.clip(rng.normal(0, 1 / 3, (200, 12)), -1, 1)
    lab = rng.integers(0, 10, 200)
    m.fit(x, lab, epochs=2, batch_size=20, verbose=0)     # away from the symmetric initial state
    c, G = m.circuit, m.conductances
    eng = NativeEngine(c, tol_v=1e-13)
    ex = exact_gradients(eng, c, G, x[:32], lab[:32], m.loss)
    ep = ep_gradients(eng, c, G, x[:32], lab[:32], m.loss, 1e-6, "symmetric", input_grad=True)
    for a, b in zip(ep.grads + [ep.input_grad], ex.grads + [ex.input_grad]):
        cos = float(np.ravel(a) @ np.ravel(b) / (np.linalg.norm(a) * np.linalg.norm(b)))
        assert cos >= 0.999, cos
