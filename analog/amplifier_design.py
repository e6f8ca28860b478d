"""The amplifiers' and sample-and-holds' bias, hold capacitor and acquisition time, derived
from the circuit they serve instead of assumed (docs/transient.md, "Where the figures come
from").

Amplifier: it drives a node of capacitance C_L (the crossbar column it feeds,
`capacitance.amplifier_load`). A single-pole amplifier has the time constant
τ_a = C_L / g_m; asked to be a set fraction r of the circuit's settling time t_s
(τ_a = r · t_s), it needs g_m = C_L / (r t_s). The current that buys this g_m is least in
weak inversion, where g_m / I_D = 1 / (n U_T) (the EKV model's weak-inversion limit,
U_T = kT/q, n the slope factor); the amplifier's input pair splits its tail current between
two branches, so the supply current is I_bias = b · n U_T · g_m with b = 2 (`branches`).
A transistor in moderate or strong inversion has a lower g_m / I_D: the figure is a lower
bound on the bias.

Sample-and-hold: the held voltage must be resolved to N bits over V_FS; its kT/C noise at
most the quantisation noise LSB²/12 gives C_H ≥ 12 kT 2^(2N) / V_FS². The hold buffer is
designed by the same rule as the amplifiers (τ_buf = C_H / g_m = r t_s, bias from g_m / I_D);
the acquisition is the time the switch and buffer take to charge C_H to half an LSB,
t_acq = ln(2^(N+1)) (R_on C_H + τ_buf), the two time constants summed (Elmore; it
overestimates two poles), with the switch sized so that R_on C_H = τ_buf (`switch_ratio`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .energy_figures import FIGURES
from .errors import AnalogInputError

BOLTZMANN = FIGURES["boltzmann"].value                # J/K, exact in the SI since 2019
ELEMENTARY_CHARGE = FIGURES["elementary_charge"].value   # C, exact in the SI since 2019


@dataclass(frozen=True)
class AmplifierDesign:
    """time_ratio: τ_a / t_s; slope: n; temperature: K; branches: supply current over the
    g_m transistor's drain current; hold_bits, hold_range: N and V_FS of the held voltage;
    switch_ratio: the S&H switch's R_on C_H over the buffer's τ_buf."""
    time_ratio: float = FIGURES["amplifier_time_ratio"].value
    slope: float = FIGURES["slope_factor"].value
    temperature: float = 300.0
    branches: float = 2.0
    hold_bits: int = 8
    hold_range: float = 2.0
    switch_ratio: float = 1.0

    def __post_init__(self):
        for key in ("time_ratio", "slope", "temperature", "branches", "hold_range"):
            value = getattr(self, key)
            if not (np.isfinite(value) and value > 0):
                raise AnalogInputError(f"transient.amplifier_{key}={value!r} must be a finite number > 0")
        if not (np.isfinite(self.switch_ratio) and self.switch_ratio >= 0):
            raise AnalogInputError(f"transient.amplifier_switch_ratio={self.switch_ratio!r} must be >= 0")
        if not (int(self.hold_bits) == self.hold_bits and self.hold_bits >= 1):
            raise AnalogInputError(f"transient.amplifier_hold_bits={self.hold_bits!r} must be an integer >= 1")

    @property
    def thermal_voltage(self) -> float:
        """U_T = kT/q, V (25.85 mV at 300 K)."""
        return BOLTZMANN * self.temperature / ELEMENTARY_CHARGE

    def transconductance(self, load_f, settle_s: float):
        """g_m (S) for τ_a = C_L / g_m = time_ratio · settle_s (load_f: F, a number or one per amplifier)."""
        return np.asarray(load_f, float) / (self.time_ratio * _positive(settle_s, "settling time"))

    def bias(self, load_f: float, settle_s: float) -> float:
        """Supply current (A) of an amplifier driving load_f farads at that g_m."""
        return self.branches * self.slope * self.thermal_voltage * self.transconductance(load_f, settle_s)

    def hold_capacitance(self) -> float:
        """C_H (F): kT/C at most the quantisation noise of hold_bits over hold_range."""
        return 12 * BOLTZMANN * self.temperature * 4.0 ** int(self.hold_bits) / self.hold_range ** 2

    def hold_bias(self, settle_s: float) -> float:
        """The hold buffer's supply current (A): it drives C_H by the amplifiers' rule."""
        return self.bias(self.hold_capacitance(), settle_s)

    def acquire_time(self, settle_s: float) -> float:
        """t_acq (s): switch and buffer charge C_H to half an LSB of hold_bits."""
        tau_buf = self.time_ratio * _positive(settle_s, "settling time")
        return np.log(2.0 ** (int(self.hold_bits) + 1)) * (1.0 + self.switch_ratio) * tau_buf


def _positive(value, what: str) -> float:
    value = float(value)
    if not (np.isfinite(value) and value > 0):
        raise AnalogInputError(f"{what}={value!r}: the derived amplifier bias needs a settled transient "
                               "(a finite time > 0); give transient.amplifier_bias as a number instead")
    return value


def reference_settling(settle_times) -> float:
    """The settling time the amplifiers are designed for: the median over the settled samples."""
    t = np.asarray(settle_times, float)
    t = t[np.isfinite(t)]
    return float(np.median(t)) if len(t) else float("nan")
