"""The device statistics as plain functions of a DeviceSpec (conductances in siemens).

PCM (IBM aihwkit's statistical model, calibrated on about a million devices: Nandakumar et
al., ICECS 2019 / J. Appl. Phys. 2018; Joshi et al., Nat. Commun. 2020), with
g_T = G/g_max clipped to [0, 1]:
    σ_prog = max(−1.1731 g_T² + 1.9650 g_T + 0.2635, 0) µS · g_max/25 µS
    ν = |N(μ_ν, σ_ν)|, μ_ν = min(max(−0.0155 ln g_T + 0.0244, 0.049), 0.1),
                     σ_ν = min(max(−0.0125 ln g_T − 0.0059, 0.008), 0.045)
    σ_read(t) = G(t) · Q_s · √ln((t + t_read)/(2 t_read)),  Q_s = min(0.0088 / g_T^0.65, 0.2)
g_T is the target conductance for σ_prog and ν, the programmed one for Q_s (the 1/f noise
amplitude is a property of the programmed state; drift only scales it through G(t)).
Time axis: t is seconds after programming; the model is calibrated from t_c on, so drift is
(t/t_c)^(−ν) for t ≥ t_c and 1 before, and a PCM read before t_c has the noise of a read at t_c.
"""
from __future__ import annotations

import numpy as np

from .spec import DeviceSpec

PCM_REFERENCE_G_MAX = 25e-6


def _g_t(spec: DeviceSpec, G) -> np.ndarray:
    return np.clip(np.asarray(G, float) / spec.g_max, 0.0, 1.0)


def prog_sigma(spec: DeviceSpec, G_target) -> np.ndarray:
    """Standard deviation of the programming error at target conductances (S)."""
    G_target = np.asarray(G_target, float)
    if spec.prog_noise == "none" or spec.prog_sigma == 0:
        return np.zeros_like(G_target)
    if spec.prog_noise == "constant":
        return np.full_like(G_target, spec.prog_sigma)
    if spec.prog_noise == "relative":
        return spec.prog_sigma * np.abs(G_target)
    g = _g_t(spec, G_target)
    micro = np.maximum(-1.1731 * g**2 + 1.9650 * g + 0.2635, 0.0)
    return spec.prog_sigma * micro * 1e-6 * (spec.g_max / PCM_REFERENCE_G_MAX)


def nu_moments(spec: DeviceSpec, G_target) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of the normal the drift exponent ν is drawn from, per device
    (`draw_nu` folds it for PCM)."""
    G_target = np.asarray(G_target, float)
    if spec.drift == "none":
        return np.zeros_like(G_target), np.zeros_like(G_target)
    if spec.drift == "constant":
        return np.full_like(G_target, spec.nu_mean), np.full_like(G_target, spec.nu_std)
    with np.errstate(divide="ignore"):
        lg = np.log(np.maximum(_g_t(spec, G_target), 1e-300))
    mu = np.minimum(np.maximum(-0.0155 * lg + 0.0244, 0.049), 0.1)
    sd = np.minimum(np.maximum(-0.0125 * lg - 0.0059, 0.008), 0.045)
    return mu, sd


def draw_nu(spec: DeviceSpec, G_target, rng) -> np.ndarray:
    """Drift exponents: |N(μ_ν, σ_ν)| for PCM (amorphous-phase relaxation only lowers the
    conductance; IBM aihwkit's PCMLikeNoiseModel folds the normal the same way), N(nu_mean,
    nu_std) as given for `constant`."""
    mu, sd = nu_moments(spec, G_target)
    nu = mu + sd * rng.standard_normal(np.shape(mu))
    return np.abs(nu) if spec.drift == "pcm" else nu


def drift_factor(spec: DeviceSpec, nu, t: float) -> np.ndarray:
    """G(t)/G_prog = (t/t_c)^(−ν) for t > t_c, 1 before (a device is read at t_c at the
    earliest in the PCM calibration; earlier reads see the programmed value). t is the time
    since the device was programmed: a number, or an array of per-device ages."""
    nu = np.asarray(nu, float)
    if spec.drift == "none":
        return np.ones_like(nu)
    ratio = np.maximum(np.asarray(t, float), spec.t_c) / spec.t_c    # t may be per device (its age)
    return np.broadcast_to(ratio ** (-nu), np.broadcast(ratio, nu).shape).copy()


def read_sigma(spec: DeviceSpec, G_prog, G_t, t: float) -> np.ndarray:
    """Standard deviation of one read at time t of devices programmed to G_prog that have
    drifted to G_t: the noise scales with G_t, its PCM amplitude Q_s is set by G_prog."""
    G_prog, G_t = np.asarray(G_prog, float), np.asarray(G_t, float)
    if spec.read_noise == "none" or spec.read_sigma == 0:
        return np.zeros_like(G_t)
    if spec.read_noise == "relative":
        return spec.read_sigma * np.abs(G_t)
    with np.errstate(divide="ignore"):
        q = np.minimum(0.0088 / np.maximum(_g_t(spec, G_prog), 1e-300) ** 0.65, 0.2)
    # the model's time axis starts at t_c (as drift does): earlier reads count as reads at t_c
    t_eff = np.maximum(np.asarray(t, float), spec.t_c)              # t may be per device (its age)
    arg = np.log((t_eff + spec.t_read) / (2.0 * spec.t_read))
    return spec.read_sigma * np.abs(G_t) * q * np.sqrt(np.maximum(arg, 0.0))


def quantise(spec: DeviceSpec, G) -> np.ndarray:
    """Nearest of `levels` evenly spaced conductances over [g_min, g_max] (identity when
    continuous)."""
    G = np.asarray(G, float)
    if spec.levels is None:
        return G.copy()
    step = spec.span / (spec.levels - 1)
    k = np.clip(np.rint((G - spec.g_min) / step), 0, spec.levels - 1)
    return spec.g_min + k * step
