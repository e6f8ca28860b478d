"""Training on real devices: noise injection (hardware-aware EP) and pulsed updates (in-situ
EP) on the iris-sized block; a programmed chip on both engines."""
import numpy as np
import pytest

from analog.devices import ShockleyDiode
from analog.hardware import NoiseInjection, PulsedOptimizer, program, resolve_hardware
from analog.builders import build_dense_network
from analog.optimizers import Adam, Schedule

EPOCHS = 30


def iris_volts(seed=0):
    from sklearn import datasets
    from sklearn.model_selection import train_test_split
    bunch = datasets.load_iris()
    xtr, xte, ytr, yte = train_test_split(bunch.data, bunch.target, test_size=0.2, stratify=bunch.target,
                                          random_state=seed)
    mu, sd = xtr.mean(0), xtr.std(0)
    volts = lambda a: np.clip((a - mu) / (3 * sd), -1, 1)   # ±3σ → ±1 V, as experiments/iris.yaml
    return volts(xtr), ytr, volts(xte), yte


def iris_block(seed=0):
    return build_dense_network(4, 3, hidden=[20], g_min=1e-7, g_max=2e-5, gain=4.0, device=ShockleyDiode(IS=1e-12),
                               up_bias=-0.3, down_bias=0.3, seed=seed)


def test_noise_injection_draws_the_programming_error_of_the_device():
    spec = resolve_hardware("pcm")
    layer = iris_block().dense_layers[0]          # g_max 20 µS → k = 25/20
    G = np.full((400, 250), 8e-6)                 # device 10 µS: g_T = 0.4
    inj = NoiseInjection(spec)
    a = inj.perturb([G], [layer], np.random.default_rng(0))[0]
    b = inj.perturb([G], [layer], np.random.default_rng(1))[0]
    g_t = 0.4
    sigma = (-1.1731 * g_t**2 + 1.9650 * g_t + 0.2635) * 1e-6 / 1.25
    assert abs(np.std(a - G) / sigma - 1) < 5 / np.sqrt(2 * G.size)
    assert abs(np.mean(a - G)) < 5 * sigma / np.sqrt(G.size)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(G, 8e-6)        # input untouched


def test_fit_trains_the_clean_conductances_on_perturbed_solves():
    xtr, ytr, _, _ = iris_volts()
    m = iris_block()
    seen = []

    class Recording(NoiseInjection):
        def perturb(self, G_list, layers, rng):
            out = super().perturb(G_list, layers, rng)
            seen.append((np.array(G_list[0]), out[0]))
            return out

    m.compile(loss="mse", amplitude=0.5, optimizer=Adam(lr=1e-3), beta=1e-7,
              perturbation=Recording(resolve_hardware("pcm")))
    m.fit(xtr[:32], ytr[:32], epochs=1, batch_size=8, verbose=0)
    assert len(seen) == 4                                   # one fresh draw per mini-batch
    assert all(not np.array_equal(clean, noisy) for clean, noisy in seen)
    for (clean, noisy), (clean_next, _) in zip(seen, seen[1:]):
        # the update (≤ lr·span = 2e-8 S) went to the clean values, not to the noisy ones (σ ≈ 1 µS)
        assert np.abs(clean_next - clean).max() <= 1.01e-3 * (2e-5 - 1e-7)
        assert np.median(np.abs(clean_next - noisy)) > 1e-7


def _train(optimizer, perturbation=None, seed=0):
    xtr, ytr, xte, yte = iris_volts()
    m = iris_block(seed)
    m.compile(loss="mse", amplitude=0.5, optimizer=optimizer, beta=1e-7, perturbation=perturbation)
    m.fit(xtr, ytr, epochs=EPOCHS, batch_size=8, verbose=0, seed=seed)
    return m, xte, yte


@pytest.mark.slow
def test_iris_hardware_aware_training_survives_pcm_chips():
    spec = resolve_hardware("pcm")
    m, xte, yte = _train(Adam(lr=0.02, schedule=Schedule("cosine", total_epochs=EPOCHS)), NoiseInjection(spec))
    assert m.evaluate(xte, yte)["accuracy"] >= 0.9
    chip_acc = [np.mean(program(m, spec, seed=s).predict(xte, t=86400.0).argmax(1) == yte) for s in range(3)]
    assert np.mean(chip_acc) >= 0.9, chip_acc


@pytest.mark.slow
def test_iris_in_situ_pulsed_training_on_rram():
    spec = resolve_hardware("rram")
    opt = PulsedOptimizer(spec, lr=0.05, base="adam", seed=0, schedule=Schedule("cosine", total_epochs=EPOCHS))
    m, xte, yte = _train(opt)
    assert m.evaluate(xte, yte)["accuracy"] >= 0.85
    assert m.history.history["accuracy"][-1] >= 0.85


@pytest.mark.parametrize("mode", ["aware", "in-situ"])
def test_saved_model_resumes_hardware_training_exactly(tmp_path, mode):
    from analog.model import AnalogModel
    xtr, ytr, _, _ = iris_volts()
    x, y = xtr[:24], ytr[:24]

    def compiled():
        m = iris_block()
        spec = resolve_hardware("rram")
        if mode == "aware":
            m.compile(loss="mse", amplitude=0.5, optimizer=Adam(lr=0.02), beta=1e-7, perturbation=NoiseInjection(spec))
        else:
            m.compile(loss="mse", amplitude=0.5, beta=1e-7,
                      optimizer=PulsedOptimizer(spec, lr=0.05, base="adam", seed=3))
        return m

    a = compiled()
    a.fit(x, y, epochs=1, batch_size=8, verbose=0)
    a.save(tmp_path / "m")
    b = AnalogModel.load(tmp_path / "m")
    assert type(b.optimizer) is type(a.optimizer) and type(b.perturbation) is type(a.perturbation)
    a.fit(x, y, epochs=1, batch_size=8, verbose=0)
    b.fit(x, y, epochs=1, batch_size=8, verbose=0)
    for ga, gb in zip(a.conductances, b.conductances):
        np.testing.assert_array_equal(ga, gb)


def study(presets=("pcm", "rram", "ebana-4level"), seeds=3, chips=10, epochs=EPOCHS):
    """Ideal / hardware-aware / in-situ EP on iris, measured on chips (run this file as a
    script: `.venv/bin/python -m tests.test_hardware_training`). Test accuracy of the trained
    block, then mean ± sd over `chips` programmed chips at t = 0 and one day later. In-situ
    blocks are already on their devices: they are read (drift, read noise, variation), not
    programmed again."""
    xtr, ytr, xte, yte = iris_volts()
    rows = []
    for preset in presets:
        spec = resolve_hardware(preset)
        for mode in ("ideal", "aware", "in-situ"):
            res = []
            for seed in range(seeds):
                schedule = Schedule("cosine", total_epochs=epochs)
                if mode == "in-situ":
                    rule = "stochastic" if spec.device.levels else "pulses"
                    opt = PulsedOptimizer(spec, lr=0.05, base="adam", rule=rule, seed=seed, schedule=schedule)
                else:
                    opt = Adam(lr=0.02, schedule=schedule)
                m, _, _ = _train(opt, NoiseInjection(spec) if mode == "aware" else None, seed=seed)
                chip_spec = spec if mode != "in-situ" else resolve_hardware(preset, {"device": {"prog_noise": "none"}})
                accs = [m.evaluate(xte, yte)["accuracy"]]
                for t in (0.0, 86400.0):
                    accs.append([np.mean(program(m, chip_spec, seed=100 + s).predict(xte, t=t).argmax(1) == yte)
                                 for s in range(chips)])
                res.append(accs)
            block_acc = np.mean([r[0] for r in res])
            t0 = np.array([r[1] for r in res]).ravel()
            t1 = np.array([r[2] for r in res]).ravel()
            rows.append((preset, mode, block_acc, t0.mean(), t0.std(), t1.mean(), t1.std()))
            print(f"{preset:5s} {mode:8s} block {block_acc:.3f}  chip t=0 {t0.mean():.3f}±{t0.std():.3f}  "
                  f"chip t=1 day {t1.mean():.3f}±{t1.std():.3f}", flush=True)
    return rows


def drift_study(chips=20, epochs=EPOCHS):
    """What uniform drift does to the trained iris block, and PCM chips read up to a year
    after programming with and without the global drift compensation (all 150 samples)."""
    from analog.native import NativeEngine
    xtr, ytr, xte, yte = iris_volts()
    x, y = np.concatenate([xtr, xte]), np.concatenate([ytr, yte])
    m, _, _ = _train(Adam(lr=0.02, schedule=Schedule("cosine", total_epochs=epochs)))
    eng, G = NativeEngine(m.circuit), m.conductances
    ref = eng.solve(G, x)
    acc = lambda v: float(np.mean(m.circuit.outputs(v).argmax(1) == y))
    print(f"trained block: {acc(ref.v):.3f} on all {len(x)} samples")
    for f in (0.95, 0.9, 0.7, 0.5, 0.3):
        s = eng.solve([f * g for g in G], x)
        print(f"uniform f={f}: max|dV| {np.abs(s.v - ref.v).max():.4f} V, max|dy| "
              f"{np.abs(m.circuit.outputs(s.v) - m.circuit.outputs(ref.v)).max():.4f} V, accuracy {acc(s.v):.3f}")
    off = build_dense_network(4, 3, hidden=[20], g_min=1e-7, g_max=2e-5, gain=4.0, device=ShockleyDiode(IS=1e-40),
                              up_bias=-0.3, down_bias=0.3)
    off.set_conductances(G)
    e_off = NativeEngine(off.circuit)
    print(f"diodes that never conduct, f=0.5: max|dV| "
          f"{np.abs(e_off.solve(G, x).v - e_off.solve([0.5 * g for g in G], x).v).max():.2e} V")
    spec = resolve_hardware("pcm")
    for t in (0.0, 3600.0, 86400.0, 30 * 86400.0, 365 * 86400.0):
        res = {True: [], False: []}
        fhat, ratio, plain = [], [], []
        for seed in range(chips):
            chip = program(m, spec, seed=seed)
            for comp in (True, False):
                res[comp].append(acc(chip.solve(x, G_list=chip.conductances_at(t, compensate=comp)).v))
            if t > spec.device.t_c:
                fhat.append(chip.drift_estimate(t))
                ratio.append(sum_ratio(chip, t))
                plain.append(np.mean(np.concatenate([(g / g0).ravel() for g, g0 in
                                                     zip(chip.device_conductances_at(t, noise=False), chip.G_prog)])))
        extra = (f"  f_hat {np.mean(fhat):.3f}, sum G(t)/sum G_prog {np.mean(ratio):.3f}, "
                 f"mean G(t)/G_prog {np.mean(plain):.3f}") if fhat else ""
        print(f"t={t:>9.0f} s: compensated {np.mean(res[True]):.3f}±{np.std(res[True]):.3f}, "
              f"not {np.mean(res[False]):.3f}±{np.std(res[False]):.3f}{extra}", flush=True)


def sum_ratio(chip, t):
    """ΣG(t)/ΣG_prog over the chip's devices (no read noise): the conductance-weighted drift."""
    return sum(g.sum() for g in chip.device_conductances_at(t, noise=False)) / sum(g.sum() for g in chip.G_prog)


def calibration_study(chips=20, epochs=EPOCHS):
    """Accuracy of the drift calibration on the trained iris block (`python -m
    tests.test_hardware_training calibration`): f̂ for a uniform drift against the true
    factor, and on `chips` PCM chips f̂ / (ΣG(t)/ΣG_prog) − 1 (mean, sd, worst over chips)."""
    m, _, _ = _train(Adam(lr=0.02, schedule=Schedule("cosine", total_epochs=epochs)))
    nu = 0.06
    uniform = resolve_hardware("ideal", {"device": {"drift": "constant", "nu_mean": nu}, "drift_compensation": True})
    for t in (86400.0, 365 * 86400.0):
        f = (t / 20.0) ** (-nu)
        print(f"uniform drift, nu={nu}, t={t:.0f} s: f_hat/f - 1 = {program(m, uniform).drift_estimate(t) / f - 1:.1e}")
    spec = resolve_hardware("pcm")
    for t in (3600.0, 86400.0, 30 * 86400.0, 365 * 86400.0):
        err = np.array([(lambda c: c.drift_estimate(t) / sum_ratio(c, t) - 1)(program(m, spec, seed=s))
                        for s in range(chips)])
        print(f"pcm, t={t:>9.0f} s, {chips} chips: f_hat / (sum G(t)/sum G_prog) - 1: mean {100 * err.mean():+.2f} %, "
              f"sd {100 * err.std():.2f} %, worst {100 * err[np.abs(err).argmax()]:+.2f} %", flush=True)


if __name__ == "__main__":
    import sys
    {"drift": drift_study, "calibration": calibration_study}.get(sys.argv[1] if sys.argv[1:] else "", study)()
