"""Device statistics of programmed chips, checked against the published formulas (written out
here independently of analog/hardware/statistics.py) over >= 1e5 devices."""
from math import erf
from types import SimpleNamespace

import numpy as np
import pytest

from analog.hardware import Chip, program, resolve_hardware
from tests.analog_circuits import block, inputs

N = 100_000
G_MAX = 25e-6


def fake_model(G, g_min=1e-7, g_max=G_MAX):
    """A stand-in with one big crossbar (no circuit: only the device statistics are used)."""
    layer = SimpleNamespace(name="d", g_min=g_min, g_max=g_max)
    return SimpleNamespace(dense_layers=[layer], conductances=[np.asarray(G, float)], circuit=None)


def pcm(**device):
    return resolve_hardware("pcm", {"device": device} if device else None)


def robust_sd(z):
    q1, q3 = np.percentile(z, [25, 75])
    return (q3 - q1) / 1.3489795


BANDS = [(0.05, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 0.9)]


def band_targets(seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.uniform(lo, hi, N // len(BANDS)) for lo, hi in BANDS]) * G_MAX


def test_pcm_programming_error_matches_the_polynomial_per_band():
    G = band_targets()
    chip = program(fake_model(G), pcm(drift="none"), seed=3)
    g_t = G / G_MAX
    sigma = np.maximum(-1.1731 * g_t**2 + 1.9650 * g_t + 0.2635, 0) * 1e-6
    z = (chip.G_prog[0] - G) / sigma
    n = N // len(BANDS)
    for k, (lo, hi) in enumerate(BANDS):
        zb = z[k * n:(k + 1) * n]
        # quartiles are untouched by the clipping at g_min / g_max (> 2 σ away in every band)
        assert abs(robust_sd(zb) - 1) < 5 * 1.36 / np.sqrt(n) * 1.0, (lo, hi, robust_sd(zb))
        assert abs(np.median(zb)) < 5 * 1.25 / np.sqrt(n)


def test_pcm_sigma_scales_with_g_max():
    g_t = np.full(N, 0.5)
    chip = program(fake_model(g_t * 50e-6, g_max=50e-6), pcm(g_max=50e-6, drift="none"), seed=1)
    sd = np.std(chip.G_prog[0] - 25e-6)
    expect = (-1.1731 * 0.25 + 1.9650 * 0.5 + 0.2635) * 1e-6 * 2.0
    assert abs(sd / expect - 1) < 5 / np.sqrt(2 * N)


def phi(z):
    """Standard normal CDF."""
    return 0.5 * (1 + np.vectorize(erf)(np.asarray(z, float) / np.sqrt(2)))


def folded_moments(mu, sd):
    """Mean and standard deviation of |X|, X ~ N(mu, sd) (the folded normal)."""
    mean = sd * np.sqrt(2 / np.pi) * np.exp(-mu**2 / (2 * sd**2)) + mu * (1 - 2 * phi(-mu / sd))
    return mean, np.sqrt(mu**2 + sd**2 - mean**2)


def test_drift_exponents_have_the_specified_mean_and_spread_per_band():
    G = band_targets(1)
    chip = program(fake_model(G), pcm(prog_noise="none"), seed=4)
    g_t = G / G_MAX
    mu = np.minimum(np.maximum(-0.0155 * np.log(g_t) + 0.0244, 0.049), 0.1)
    sd = np.minimum(np.maximum(-0.0125 * np.log(g_t) - 0.0059, 0.008), 0.045)
    fmean, fsd = folded_moments(mu, sd)               # the PCM model draws |N(mu, sd)|
    z = (chip.nu[0] - fmean) / fsd
    n = N // len(BANDS)
    for k in range(len(BANDS)):
        zb = z[k * n:(k + 1) * n]
        assert abs(zb.mean()) < 5 / np.sqrt(n)
        assert abs(zb.std() - 1) < 5 / np.sqrt(2 * n)
    # constant drift: N(nu_mean, nu_std) for every device, as given (not folded)
    chip = program(fake_model(G), pcm(prog_noise="none", drift="constant", nu_mean=0.03, nu_std=0.01), seed=4)
    assert abs(chip.nu[0].mean() - 0.03) < 5 * 0.01 / np.sqrt(N)
    assert abs(chip.nu[0].std() / 0.01 - 1) < 5 / np.sqrt(2 * N)
    chip = program(fake_model(G), pcm(prog_noise="none", drift="constant", nu_mean=0.0, nu_std=0.01), seed=4)
    assert abs(np.mean(chip.nu[0] < 0) - 0.5) < 5 * 0.5 / np.sqrt(N)


def test_pcm_drift_exponents_are_folded_at_low_conductance():
    """|N(mu, sd)| as IBM aihwkit's PCMLikeNoiseModel draws it: at g_T = 0.01, N(mu, sd) would
    be negative for Phi(-mu/sd) = 1.7 % of devices, whose conductance would then grow."""
    g_t = 0.01
    chip = program(fake_model(np.full(N, g_t * G_MAX)), pcm(prog_noise="none"), seed=6)
    nu = chip.nu[0]
    mu = min(max(-0.0155 * np.log(g_t) + 0.0244, 0.049), 0.1)
    sd = min(max(-0.0125 * np.log(g_t) - 0.0059, 0.008), 0.045)
    assert nu.min() >= 0
    fmean, fsd = folded_moments(mu, sd)
    assert abs(nu.mean() - fmean) < 5 * fsd / np.sqrt(N)
    for a in (0.25 * mu, 0.5 * mu, mu):                # CDF of |X|: Phi((a-mu)/sd) - Phi((-a-mu)/sd)
        p = phi((a - mu) / sd) - phi((-a - mu) / sd)
        assert abs(np.mean(nu <= a) - p) < 5 * np.sqrt(p * (1 - p) / N), a
    G_year = chip.device_conductances_at(3.15e7, noise=False)[0]
    assert np.all(G_year <= chip.G_prog[0])            # no device grows with time


def test_conductance_follows_the_power_law_and_is_not_reclipped():
    G = np.linspace(0.01, 1, 2000) * G_MAX
    spec = pcm(prog_noise="none", read_noise="none")
    chip = program(fake_model(G), spec, seed=5)
    G0 = chip.G_prog[0]
    np.testing.assert_array_equal(chip.device_conductances_at(0.0)[0], G0)
    np.testing.assert_array_equal(chip.device_conductances_at(19.9)[0], G0)   # before t_c: no drift
    times = np.array([20.0, 60.0, 3600.0, 86400.0, 3.15e7])
    logG = np.log([chip.device_conductances_at(t)[0] for t in times])
    slopes = np.polyfit(np.log(times), logG, 1)[0]
    np.testing.assert_allclose(slopes, -chip.nu[0], atol=1e-12)
    assert (chip.device_conductances_at(3.15e7)[0] < spec.device.g_min).any()   # drifts below g_min


@pytest.mark.parametrize("levels", [2, 4, 7])
def test_number_of_distinct_levels(levels):
    G = np.random.default_rng(0).uniform(1e-7, G_MAX, N)
    spec = resolve_hardware("ideal", {"device": {"g_min": 1e-7, "g_max": G_MAX, "levels": levels}})
    chip = program(fake_model(G), spec, seed=0)
    values = np.unique(chip.G_prog[0])
    assert len(values) == levels
    np.testing.assert_allclose(values, np.linspace(1e-7, G_MAX, levels), rtol=1e-12)
    # each target lands on its nearest level
    nearest = np.linspace(1e-7, G_MAX, levels)[np.abs(G[:, None] - np.linspace(1e-7, G_MAX, levels)).argmin(1)]
    np.testing.assert_allclose(chip.G_prog[0], nearest, rtol=1e-12)


def test_stuck_shares():
    G = np.full(N, 12e-6)
    spec = resolve_hardware("ideal", {"device": {"g_max": G_MAX, "stuck_g_min": 0.03, "stuck_g_max": 0.05}})
    chip = program(fake_model(G), spec, seed=2)
    low, high = np.mean(chip.G_prog[0] == 1e-7), np.mean(chip.G_prog[0] == G_MAX)
    for share, p in ((low, 0.03), (high, 0.05)):
        assert abs(share - p) < 5 * np.sqrt(p * (1 - p) / N)
    assert np.array_equal(chip.stuck[0] == -1, chip.G_prog[0] == 1e-7)


def test_read_noise_relative_and_pcm_scale_as_specified():
    G = np.full(N, 10e-6)
    rel = program(fake_model(G), resolve_hardware("ideal", {"device": {
        "g_max": G_MAX, "read_noise": "relative", "read_sigma": 0.02}}), seed=0)
    r = rel.device_conductances_at(0.0)[0]
    assert abs(np.std(r / G - 1) / 0.02 - 1) < 5 / np.sqrt(2 * N)
    assert not np.array_equal(r, rel.device_conductances_at(0.0)[0])        # fresh per read
    chip = program(fake_model(np.random.default_rng(1).uniform(0.05, 1, N) * G_MAX),
                   pcm(prog_noise="none", drift="none"), seed=0)
    Gt = chip.G_prog[0]
    q = np.minimum(0.0088 / (Gt / G_MAX) ** 0.65, 0.2)
    for t in (100.0, 86400.0, 3.15e7):
        read = chip.device_conductances_at(t)[0]
        z = (read - Gt) / (Gt * q * np.sqrt(np.log((t + 250e-9) / (2 * 250e-9))))
        assert abs(z.std() - 1) < 5 / np.sqrt(2 * N), t
        assert abs(z.mean()) < 5 / np.sqrt(N)


def test_pcm_read_noise_scales_with_the_programmed_conductance():
    """σ_read(t) = G(t)·Q_s(G_prog/g_max)·√ln((t + t_read)/(2 t_read)): Q_s is a property of the
    programmed state (aihwkit PCMLikeNoiseModel), the drifted G(t) only scales it."""
    from analog.hardware.statistics import read_sigma
    d = resolve_hardware("pcm").device
    g0, nu, t, t_read = 12.5e-6, 0.06, 3.15e7, 250e-9
    g_t = g0 * (t / 20.0) ** (-nu)
    expect = g_t * min(0.0088 / (g0 / 25e-6) ** 0.65, 0.2) * np.sqrt(np.log((t + t_read) / (2 * t_read)))
    assert read_sigma(d, [g0], [g_t], t)[0] == pytest.approx(expect, rel=1e-12)
    # over a drifted chip: devices from g_T 0.3 to 1 (reads stay far above the floor)
    chip = program(fake_model(np.random.default_rng(2).uniform(0.3, 1, N) * G_MAX), pcm(prog_noise="none"), seed=1)
    G0 = chip.G_prog[0]
    q = np.minimum(0.0088 / (G0 / G_MAX) ** 0.65, 0.2)
    for t in (3600.0, 86400.0, 3.15e7):
        Gt = G0 * (t / 20.0) ** (-chip.nu[0])
        z = (chip.device_conductances_at(t)[0] - Gt) / (Gt * q * np.sqrt(np.log((t + t_read) / (2 * t_read))))
        assert abs(z.std() - 1) < 5 / np.sqrt(2 * N), t
        assert abs(z.mean()) < 5 / np.sqrt(N), t


def test_same_seed_same_chip_and_different_seed_differs():
    m = block(hidden=(4,))
    a, b, c = (program(m, resolve_hardware("pcm"), seed=s) for s in (7, 7, 8))
    for k in range(2):
        np.testing.assert_array_equal(a.G_prog[k], b.G_prog[k])
        np.testing.assert_array_equal(a.nu[k], b.nu[k])
        assert not np.array_equal(a.G_prog[k], c.G_prog[k])
    np.testing.assert_array_equal(a.device_conductances_at(100.0, np.random.default_rng(1))[0],
                                  b.device_conductances_at(100.0, np.random.default_rng(1))[0])


def test_save_load_round_trip_is_identical(tmp_path):
    m = block(hidden=(4,))
    spec = resolve_hardware("rram", {"variation": {"is_sigma": 0.0, "vto_sigma": 0.0, "gain_sigma": 0.0,
                                                   "offset_sigma": 0.0}})
    chip = program(m, spec, seed=11)
    chip.save(tmp_path / "chip")
    back = Chip.load(tmp_path / "chip", m)
    assert back.spec == chip.spec and back.seed == chip.seed
    for k in range(2):
        for attr in ("G_prog", "nu", "stuck"):
            np.testing.assert_array_equal(getattr(back, attr)[k], getattr(chip, attr)[k])
    x = inputs(5, 3)
    np.testing.assert_array_equal(back.predict(x, rng=np.random.default_rng(2)),
                                  chip.predict(x, rng=np.random.default_rng(2)))
    assert "pickle" not in (tmp_path / "chip" / "chip.json").read_text()


def test_ideal_chip_reproduces_the_trained_block():
    m = block(hidden=(5,), vref=0.6)
    chip = program(m, resolve_hardware("ideal"), seed=0)
    x = inputs(10, 3)
    np.testing.assert_allclose(chip.predict(x, t=1e6), m.predict(x), atol=1e-12)


def test_dense_set_conductances_checks_before_writing():
    m = block(hidden=(3,))
    layer = m.dense_layers[0]
    before = layer.G.copy()
    bad = before.copy()
    bad[0, 0] = layer.g_min / 2          # e.g. a drifted conductance written back
    with pytest.raises(ValueError, match=layer.name):
        layer.set_conductances(bad)
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        layer.set_conductances(bad)
    np.testing.assert_array_equal(layer.G, before)


def test_drift_compensation_undoes_a_uniform_drift():
    from analog.native import NativeEngine
    m = block(hidden=(6,), vref=0.6)
    nu, t = 0.06, 86400.0
    spec = resolve_hardware("ideal", {"device": {"drift": "constant", "nu_mean": nu, "nu_std": 0.0},
                                      "drift_compensation": True})
    chip = program(m, spec, seed=0)
    f = (t / 20.0) ** (-nu)                                 # every device drifts by this factor
    assert abs(chip.drift_estimate(t) / f - 1) < 1e-6        # measured: 1.8e-9
    x = inputs(20, 3)
    eng = NativeEngine(m.circuit)
    y0 = m.circuit.outputs(eng.solve(m.conductances, x).v)
    y_raw = chip.circuit.outputs(eng.solve(chip.conductances_at(t, compensate=False), x).v)
    y_comp = chip.circuit.outputs(eng.solve(chip.conductances_at(t), x).v)
    np.testing.assert_allclose(chip.conductances_at(t, compensate=False)[0], f * m.conductances[0], rtol=1e-12)
    assert np.abs(y_raw - y0).max() > 1e-3                    # 5 mV uncompensated
    assert np.abs(y_comp - y0).max() < 1e-6                   # measured: 1.8e-11 V


def iris_sized_block(hidden=(20,)):
    """4 → hidden → 3 with the default diodes (IS = 1 pA at ∓0.3 V): at rest every diode pair is
    forward biased by 0.3 V, a fixed ≈ 9 µS shunt against crossbar rows of tens of µS."""
    from analog.devices import ShockleyDiode
    from analog.builders import build_dense_network
    return build_dense_network(4, 3, hidden=list(hidden), g_min=1e-7, g_max=2e-5, gain=4.0,
                               device=ShockleyDiode(IS=1e-12), up_bias=-0.3, down_bias=0.3, seed=1)


@pytest.mark.parametrize("hidden", [(20,), (8, 6)])
def test_drift_calibration_is_exact_on_a_block_whose_diodes_conduct(hidden):
    """A uniform drift G → f·G is recovered to the solver's precision although the diodes of
    this block conduct at every input the block is used with."""
    from analog.native import NativeEngine
    m = iris_sized_block(hidden)
    nu, t = 0.06, 86400.0
    spec = resolve_hardware("ideal", {"device": {"drift": "constant", "nu_mean": nu, "nu_std": 0.0},
                                      "drift_compensation": True})
    chip = program(m, spec, seed=0)
    f = (t / 20.0) ** (-nu)
    assert abs(chip.drift_estimate(t) / f - 1) < 1e-6
    x = inputs(20, 4, scale=1.0)
    eng = NativeEngine(m.circuit)
    y0 = m.circuit.outputs(eng.solve(m.conductances, x).v)
    y_raw = m.circuit.outputs(eng.solve(chip.conductances_at(t, compensate=False), x).v)
    y_comp = m.circuit.outputs(eng.solve(chip.conductances_at(t), x).v)
    assert np.abs(y_raw - y0).max() > 1e-3
    assert np.abs(y_comp - y0).max() < 1e-6


def test_drift_calibration_refuses_diodes_that_conduct_at_any_bias():
    """A MOS diode with VTO < 0 conducts with its gate at its source: no diode bias blocks it,
    so a calibration read would be biased; the chip says so instead of guessing."""
    from analog.devices import MOSDiode
    m = block(hidden=(4,), device=MOSDiode(VTO=-0.2, KP=2e-4))
    spec = resolve_hardware("ideal", {"device": {"drift": "constant", "nu_mean": 0.05}, "drift_compensation": True})
    with pytest.raises(ValueError, match="hardware.drift_compensation=true: .* set hardware.drift_compensation: false"):
        program(m, spec, seed=0).drift_estimate(86400.0)


def test_drift_estimate_on_pcm_chips_tracks_the_conductance_weighted_drift():
    """With per-device ν the estimate is a current-weighted mean drift; over 12 chips one year
    after programming its RMS distance from ΣG(t)/ΣG_prog stays below 1 % (measured 0.65 %;
    a calibration read with the diodes conducting and one read each gives 1.5 %)."""
    m, t = iris_sized_block(), 3.15e7
    err = []
    for seed in range(12):
        chip = program(m, pcm(), seed=seed)
        ratio = sum(g.sum() for g in chip.device_conductances_at(t, noise=False)) / sum(g.sum() for g in chip.G_prog)
        err.append(chip.drift_estimate(t) / ratio - 1)
    assert np.sqrt(np.mean(np.square(err))) < 0.01
