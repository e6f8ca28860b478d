"""Nonlinear two-terminal devices (the circuit's nonlinearity).

A device is described by its branch current I(u) for a branch voltage u = V(anode) −
V(cathode), its small-signal conductance dI/du and its co-content ∫₀ᵘ I(v) dv (its share
of the circuit's energy).  The same object writes its SPICE form, so the native engine and
ngspice simulate one and the same element.  All methods are vectorised over numpy arrays.

To add a device, subclass `Device` and implement `current`, `cocontent`, `spice_lines`
(see `MOSDiode` for a complete example of a few lines).  Devices must be passive with a
monotone I(u): that keeps the circuit's energy convex, so the operating point is unique and
the native engine's damped Newton iteration always finds it.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
from scipy.special import wrightomega

# ngspice-39 physical constants (src/include/ngspice/const.h) and its nominal temperature,
# so that the thermal voltage matches the reference engine to the last digit.
BOLTZMANN = 1.38064852e-23
CHARGE = 1.6021766208e-19
TNOM_KELVIN = 27.0 + 273.15
THERMAL_VOLTAGE = BOLTZMANN * TNOM_KELVIN / CHARGE


class Device:
    """Base class of a nonlinear two-terminal element."""

    #: True when `current` may overflow for large forward voltages, so Newton steps are
    #: limited SPICE-style (pnjlim) on this device's branch voltage.
    needs_limiting = False

    def current(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (I(u), dI/du)."""
        raise NotImplementedError

    def cocontent(self, u: np.ndarray) -> np.ndarray:
        """Return ∫₀ᵘ I(v) dv."""
        raise NotImplementedError

    def spice_lines(self, name: str, anode: str, cathode: str) -> list[str]:
        """SPICE element line(s) for one instance."""
        raise NotImplementedError

    def spice_models(self) -> list[str]:
        """`.model` cards the instances need (written once per netlist)."""
        return []

    def limit(self, u_old: np.ndarray, u_new: np.ndarray) -> np.ndarray:
        """Limit a Newton update of the branch voltage (identity unless overridden)."""
        return u_new

    def validate(self) -> None:
        """Raise ValueError naming a bad parameter."""

    @property
    def model_name(self) -> str:
        digest = hashlib.sha1(repr(self.spice_key()).encode()).hexdigest()[:8]
        return f"m{type(self).__name__.lower()}_{digest}"

    def spice_key(self) -> tuple:
        return (type(self).__name__,) + tuple(sorted(vars(self).items()))


def _positive(owner: str, **values: float) -> None:
    for key, value in values.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{owner}: parameter {key}={value!r} must be a finite number > 0")


@dataclass(frozen=True)
class ShockleyDiode(Device):
    """SPICE junction diode: I = IS·(exp(u_j/(N·Vt)) − 1) with u = u_j + RS·I.

    With RS > 0 the implicit equation is solved in closed form with the Wright omega
    function ω(z) = W(eᶻ), which never overflows.  In reverse bias below −3·N·Vt ngspice
    switches to the approximation −IS·(1 + (3NVt/(e·u))³); the two differ by less than IS
    (1e-14 A by default), far below the engines' agreement tolerance.
    """

    IS: float = 1e-14
    N: float = 1.0
    RS: float = 0.0

    def validate(self) -> None:
        _positive("ShockleyDiode", IS=self.IS, N=self.N)
        if not (math.isfinite(self.RS) and self.RS >= 0):
            raise ValueError(f"ShockleyDiode: parameter RS={self.RS!r} must be >= 0")

    @property
    def needs_limiting(self) -> bool:  # type: ignore[override]
        return self.RS == 0.0

    @property
    def vte(self) -> float:
        return self.N * THERMAL_VOLTAGE

    def current(self, u):
        u = np.asarray(u, dtype=float)
        vte, IS, RS = self.vte, self.IS, self.RS
        if RS == 0.0:
            e = np.exp(np.minimum(u / vte, 700.0))
            return IS * (e - 1.0), IS * e / vte
        z = math.log(IS * RS / vte) + (u + IS * RS) / vte
        w = wrightomega(z)
        current = vte / RS * w - IS
        return current, w / (RS * (1.0 + w))

    def cocontent(self, u):
        u = np.asarray(u, dtype=float)
        vte, IS, RS = self.vte, self.IS, self.RS
        if RS == 0.0:
            return IS * vte * np.expm1(np.minimum(u / vte, 700.0)) - IS * u
        z = math.log(IS * RS / vte) + (u + IS * RS) / vte
        w = wrightomega(z)
        current = vte / RS * w - IS
        # ∫ I du = I·u − ∫ u dI, with u(I) = RS·I + N·Vt·ln(1 + I/IS); ln(1 + I/IS) = z' − ω
        log_term = (u + IS * RS) / vte - w
        return current * u - (0.5 * RS * current**2 + vte * ((current + IS) * log_term - current))

    def limit(self, u_old, u_new):
        # SPICE pnjlim: above the critical voltage, grow the junction voltage
        # logarithmically rather than linearly so exp() stays finite.
        vte = self.vte
        vcrit = vte * math.log(vte / (math.sqrt(2.0) * self.IS))
        big = (u_new > vcrit) & (np.abs(u_new - u_old) > 2.0 * vte)
        if not np.any(big):
            return u_new
        out = u_new.copy()
        uo, un = u_old[big], u_new[big]
        arg = 1.0 + (un - uo) / vte
        limited = np.where(uo > 0, np.where(arg > 0, uo + vte * np.log(np.maximum(arg, 1e-300)), vcrit),
                           vte * np.log(un / vte))
        out[big] = limited
        return out

    def spice_lines(self, name, anode, cathode):
        return [f"D{name} {anode} {cathode} {self.model_name}"]

    def spice_models(self):
        return [f".model {self.model_name} D(IS={self.IS!r} N={self.N!r} RS={self.RS!r})"]


@dataclass(frozen=True)
class IdealDiode(Device):
    """Behavioural diode: off below a threshold, a resistance R_on above it.

    The knee is rounded over `smoothing` volts by a quadratic piece, so the current is
    continuously differentiable (Newton's method needs that) and the co-content is exact.
    """

    threshold: float = 0.3
    r_on: float = 100.0
    smoothing: float = 0.01

    def validate(self) -> None:
        _positive("IdealDiode", r_on=self.r_on, smoothing=self.smoothing)
        if not math.isfinite(self.threshold):
            raise ValueError(f"IdealDiode: parameter threshold={self.threshold!r} must be finite")

    def current(self, u):
        s = np.asarray(u, dtype=float) - self.threshold
        d, r = self.smoothing, self.r_on
        on = s >= d
        knee = (s > 0) & ~on
        current = np.where(on, (s - 0.5 * d) / r, np.where(knee, s * s / (2 * d * r), 0.0))
        conductance = np.where(on, 1.0 / r, np.where(knee, s / (d * r), 0.0))
        return current, conductance

    def cocontent(self, u):
        u = np.asarray(u, dtype=float)
        d, r = self.smoothing, self.r_on

        def primitive(s):  # ∫_{-inf}^{s} I, measured from the threshold
            return np.where(s >= d, d * d / (6 * r) + ((s - 0.5 * d) ** 2 - (0.5 * d) ** 2) / (2 * r),
                            np.where(s > 0, s**3 / (6 * d * r), 0.0))

        return primitive(u - self.threshold) - primitive(np.zeros_like(u) - self.threshold)

    def spice_lines(self, name, anode, cathode):
        d, r, vt = self.smoothing, self.r_on, self.threshold
        s = f"(V({anode},{cathode})-({vt!r}))"
        expr = f"({s} >= {d!r}) ? (({s}-{0.5 * d!r})/{r!r}) : (({s} > 0) ? ({s}*{s}/{2 * d * r!r}) : 0)"
        return [f"B{name} {anode} {cathode} I={{{expr}}}"]


@dataclass(frozen=True)
class MOSDiode(Device):
    """Diode-connected n-MOSFET (gate tied to drain, bulk to source), SPICE level 1.

    Channel: I = KP/2·(W/L)·(u − VTO)²·(1 + λu) for u > VTO (always saturated since
    V_DS = V_GS), plus the drain–bulk junction that SPICE's level-1 model carries.
    """

    VTO: float = 0.4
    KP: float = 1e-4
    LAMBDA: float = 0.0
    W: float = 1e-6
    L: float = 1e-6
    IS: float = 1e-14

    def validate(self) -> None:
        _positive("MOSDiode", KP=self.KP, W=self.W, L=self.L, IS=self.IS)
        if self.LAMBDA < 0:
            raise ValueError(f"MOSDiode: parameter LAMBDA={self.LAMBDA!r} must be >= 0")

    def _junction(self):  # bulk (cathode) → drain (anode) junction, reversed
        return ShockleyDiode(IS=self.IS)

    def current(self, u):
        u = np.asarray(u, dtype=float)
        beta, lam = self.KP * self.W / self.L, self.LAMBDA
        ov = np.maximum(u - self.VTO, 0.0)
        ich = 0.5 * beta * ov**2 * (1 + lam * u)
        gch = beta * ov * (1 + lam * u) + 0.5 * beta * ov**2 * lam
        ij, gj = self._junction().current(-u)
        return ich - ij, gch + gj

    def cocontent(self, u):
        u = np.asarray(u, dtype=float)
        beta, lam, vto = self.KP * self.W / self.L, self.LAMBDA, self.VTO
        ov = np.maximum(u - vto, 0.0)
        # ∫ ½β s²(1 + λ(s + VTO)) ds from 0 to ov
        channel = 0.5 * beta * (ov**3 / 3 * (1 + lam * vto) + lam * ov**4 / 4)
        return channel + self._junction().cocontent(-u)

    needs_limiting = False

    def spice_lines(self, name, anode, cathode):
        return [f"M{name} {anode} {anode} {cathode} {cathode} {self.model_name} W={self.W!r} L={self.L!r}"]

    def spice_models(self):
        return [f".model {self.model_name} NMOS(LEVEL=1 VTO={self.VTO!r} KP={self.KP!r} "
                f"LAMBDA={self.LAMBDA!r} IS={self.IS!r})"]
