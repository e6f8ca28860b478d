"""Nonlinear two-terminal devices (the circuit's nonlinearity).

A device is described by its branch current I(u) for a branch voltage u = V(anode) −
V(cathode), its small-signal conductance dI/du and its co-content ∫₀ᵘ I(v) dv (its share
of the circuit's energy).  The same object writes its SPICE form, so the native engine and
ngspice simulate one and the same element.  All methods are vectorised over numpy arrays.

To add a device, subclass `Device` and implement `current`, `cocontent`, `spice_lines`
(see `MOSDiode` for a complete example of a few lines).  Devices must be passive with a
monotone I(u): that keeps the circuit's energy convex, so the operating point is unique and
the native engine's damped Newton iteration always finds it.

Per-element parameters. Any parameter may be a 1-D array of length n instead of a number:
the device then stands for n devices (one per node of its diode layer), each with its own
value, and every method broadcasts over a batch of branch voltages (B, n). `instance(k)`
is the scalar device k (what one SPICE instance and its `.model` card describe).
"""
from __future__ import annotations

import dataclasses
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
    """Base class of a nonlinear two-terminal element (subclasses are frozen dataclasses
    whose fields are the parameters, each a number or a 1-D array over the instances)."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (np.generic, np.ndarray)) and np.ndim(value) == 0:
                object.__setattr__(self, f.name, float(value))   # repr must be a SPICE number
            elif np.ndim(value) > 0:
                arr = np.array(value, dtype=float).reshape(-1) if np.ndim(value) == 1 else None
                if arr is None:
                    raise ValueError(f"{type(self).__name__}: parameter {f.name} must be a number or a 1-D "
                                     f"array, got shape {np.shape(value)}")
                arr.setflags(write=False)
                object.__setattr__(self, f.name, arr)
        sizes = {len(getattr(self, f.name)) for f in dataclasses.fields(self) if np.ndim(getattr(self, f.name))}
        if len(sizes) > 1:
            raise ValueError(f"{type(self).__name__}: per-element parameters of different lengths {sorted(sizes)}")

    # per-element parameters ---------------------------------------------------------------
    def parameters(self) -> dict:
        """{name: number or 1-D array} of every parameter."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def size(self) -> int | None:
        """Number of instances when some parameter is an array, None for a scalar device."""
        for value in self.parameters().values():
            if np.ndim(value):
                return len(value)
        return None

    def instance(self, k: int) -> "Device":
        """The scalar device k (self when no parameter is an array)."""
        n = self.size
        if n is None:
            return self
        if not (-n <= k < n):
            raise IndexError(f"{type(self).__name__}: instance {k} of {n}")
        return dataclasses.replace(self, **{name: float(v[k]) for name, v in self.parameters().items()
                                            if np.ndim(v)})

    def __eq__(self, other):
        return type(self) is type(other) and self.spice_key() == other.spice_key()

    def __hash__(self):
        return hash(self.spice_key())

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
        items = [(k, tuple(v.tolist()) if isinstance(v, np.ndarray) else v) for k, v in sorted(vars(self).items())]
        return (type(self).__name__,) + tuple(items)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _finite(owner: str, key: str, value, condition: str = "finite") -> None:
    """Check a number or array parameter: finite, and > 0 ('positive') or >= 0 ('nonneg')."""
    arr = np.asarray(value, dtype=float) if (_is_number(value) or isinstance(value, np.ndarray)) else None
    ok = arr is not None and bool(np.all(np.isfinite(arr)))
    if ok and condition == "positive":
        ok = bool(np.all(arr > 0))
    elif ok and condition == "nonneg":
        ok = bool(np.all(arr >= 0))
    if not ok:
        what = {"positive": "> 0", "nonneg": ">= 0", "finite": "finite"}[condition]
        shown = value if arr is None or arr.ndim == 0 else f"array with min {np.nanmin(arr):g}"
        raise ValueError(f"{owner}: parameter {key}={shown!r} must be a finite number {what}".replace(
            "finite number finite", "finite number"))


def _positive(owner: str, **values) -> None:
    for key, value in values.items():
        _finite(owner, key, value, "positive")


@dataclass(frozen=True, eq=False)
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
        _finite("ShockleyDiode", "RS", self.RS, "nonneg")

    @property
    def needs_limiting(self) -> bool:  # type: ignore[override]
        return bool(np.any(np.asarray(self.RS) == 0.0))

    @property
    def vte(self):
        return self.N * THERMAL_VOLTAGE

    def _omega(self, u, RS):
        """(I, dI/du, ω, z') of the series-resistance solution for RS > 0 (array-safe)."""
        vte, IS = self.vte, self.IS
        zp = (u + IS * RS) / vte
        w = wrightomega(np.log(IS * RS / vte) + zp)
        return vte / RS * w - IS, w / (RS * (1.0 + w)), w, zp

    def current(self, u):
        u = np.asarray(u, dtype=float)
        vte, IS, RS = self.vte, self.IS, self.RS
        rs0 = np.asarray(RS) == 0.0
        if np.all(rs0):
            e = np.exp(np.minimum(u / vte, 700.0))
            return IS * (e - 1.0), IS * e / vte
        i_rs, g_rs, _, _ = self._omega(u, np.where(rs0, 1.0, RS))
        if not np.any(rs0):
            return i_rs, g_rs
        e = np.exp(np.minimum(u / vte, 700.0))
        return np.where(rs0, IS * (e - 1.0), i_rs), np.where(rs0, IS * e / vte, g_rs)

    def cocontent(self, u):
        u = np.asarray(u, dtype=float)
        vte, IS, RS = self.vte, self.IS, self.RS
        rs0 = np.asarray(RS) == 0.0
        if np.all(rs0):
            return IS * vte * np.expm1(np.minimum(u / vte, 700.0)) - IS * u
        R = np.where(rs0, 1.0, RS)
        current, _, w, zp = self._omega(u, R)
        # ∫ I du = I·u − ∫ u dI, with u(I) = RS·I + N·Vt·ln(1 + I/IS); ln(1 + I/IS) = z' − ω
        value = current * u - (0.5 * R * current**2 + vte * ((current + IS) * (zp - w) - current))
        if not np.any(rs0):
            return value
        return np.where(rs0, IS * vte * np.expm1(np.minimum(u / vte, 700.0)) - IS * u, value)

    def limit(self, u_old, u_new):
        # SPICE pnjlim: above the critical voltage, grow the junction voltage
        # logarithmically rather than linearly so exp() stays finite.
        vte = np.broadcast_to(self.vte, u_new.shape)
        vcrit = np.broadcast_to(self.vte * np.log(self.vte / (math.sqrt(2.0) * self.IS)), u_new.shape)
        big = (u_new > vcrit) & (np.abs(u_new - u_old) > 2.0 * vte)
        if not np.any(big):
            return u_new
        out = u_new.copy()
        uo, un, vt, vc = u_old[big], u_new[big], vte[big], vcrit[big]
        arg = 1.0 + (un - uo) / vt
        limited = np.where(uo > 0, np.where(arg > 0, uo + vt * np.log(np.maximum(arg, 1e-300)), vc),
                           vt * np.log(un / vt))
        out[big] = limited
        return out

    def spice_lines(self, name, anode, cathode):
        return [f"D{name} {anode} {cathode} {self.model_name}"]

    def spice_models(self):
        return [f".model {self.model_name} D(IS={self.IS!r} N={self.N!r} RS={self.RS!r})"]


@dataclass(frozen=True, eq=False)
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
        _finite("IdealDiode", "threshold", self.threshold)

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


@dataclass(frozen=True, eq=False)
class MOSDiode(Device):
    """Diode-connected n-MOSFET (gate tied to drain, bulk to source), SPICE level 1 (GAMMA = 0).

    u = V(anode) − V(cathode), anode = drain = gate, cathode = source = bulk; β = KP·W/L.
    Level 1 calls the lower of drain and source the source, so there are two modes:
      u ≥ 0: V_DS = u, V_GST = u − VTO;
      u < 0: the anode is the source: V_DS' = −u, V_GST' = V_G − V_anode − VTO = −VTO, and
             the channel current flows from cathode to anode.
    In each mode: cut off for V_GST ≤ 0, saturated I = ½β V_GST² (1 + λV_DS) for V_GST ≤ V_DS,
    linear I = β V_DS (V_GST − ½V_DS)(1 + λV_DS) otherwise. With VTO ≥ 0 the forward channel is
    always saturated and the reverse one off; with VTO < 0 the channel conducts both ways
    (I(0) = 0 and dI/du = β|VTO| at u = 0, so the device stays passive). I(u) is monotone
    increasing in every region. Plus the bulk–drain junction (reverse diode, saturation
    current IS) that level 1 carries; its bulk–source junction sits at 0 V.
    """

    VTO: float = 0.4
    KP: float = 1e-4
    LAMBDA: float = 0.0
    W: float = 1e-6
    L: float = 1e-6
    IS: float = 1e-14

    def validate(self) -> None:
        _positive("MOSDiode", KP=self.KP, W=self.W, L=self.L, IS=self.IS)
        _finite("MOSDiode", "VTO", self.VTO)
        _finite("MOSDiode", "LAMBDA", self.LAMBDA, "nonneg")

    def _junction(self):  # bulk (cathode) → drain (anode) junction, reversed
        return ShockleyDiode(IS=self.IS)

    def _channel(self, u):
        """Channel current anode → cathode and dI/du."""
        beta, lam, vto = self.KP * self.W / self.L, self.LAMBDA, self.VTO
        fwd = u >= 0
        vds = np.abs(u)
        vgst = np.where(fwd, u - vto, -vto + 0.0 * u)
        on = vgst > 0
        sat = vgst <= vds
        clm = 1.0 + lam * vds
        i_sat = 0.5 * beta * vgst**2 * clm
        i_lin = beta * vds * (vgst - 0.5 * vds) * clm
        gm = np.where(sat, beta * vgst * clm, beta * vds * clm)
        gds = np.where(sat, 0.5 * beta * vgst**2 * lam,
                       beta * (vgst - vds) * clm + beta * vds * (vgst - 0.5 * vds) * lam)
        i = np.where(on, np.where(sat, i_sat, i_lin), 0.0)
        # forward: dV_DS/du = dV_GST/du = 1; reverse: I = −i, dV_DS'/du = −1, dV_GST'/du = 0
        g = np.where(on, np.where(fwd, gm + gds, gds), 0.0)
        return np.where(fwd, i, -i), g

    def current(self, u):
        u = np.asarray(u, dtype=float)
        ich, gch = self._channel(u)
        ij, gj = self._junction().current(-u)
        return ich - ij, gch + gj

    def cocontent(self, u):
        u = np.asarray(u, dtype=float)
        beta, lam, vto = self.KP * self.W / self.L, self.LAMBDA, self.VTO
        up = np.maximum(u, 0.0)
        # forward, VTO ≥ 0 (saturated): ∫ ½β s²(1 + λ(s + VTO)) ds over s = 0 … u − VTO
        ov = np.maximum(up - vto, 0.0)
        fwd_sat = 0.5 * beta * (ov**3 / 3 * (1 + lam * vto) + lam * ov**4 / 4)
        # forward, VTO < 0 (linear): ∫ β t (t/2 − VTO)(1 + λt) dt over t = 0 … u
        fwd_lin = beta * (up**3 / 6 - vto * up**2 / 2 + lam * (up**4 / 8 - vto * up**3 / 3))
        forward = np.where(vto >= 0, fwd_sat, fwd_lin)
        # reverse (w = −u, a = −VTO > 0): linear for w ≤ a, saturated beyond
        a = np.maximum(-vto, 0.0)
        w = np.maximum(-u, 0.0)
        wl = np.minimum(w, a)
        rev_lin = beta * (a * wl**2 / 2 - wl**3 / 6 + lam * (a * wl**3 / 3 - wl**4 / 8))
        ws = np.maximum(w, a)
        rev_sat = 0.5 * beta * a**2 * ((ws - a) + 0.5 * lam * (ws**2 - a**2))
        reverse = rev_lin + rev_sat
        return np.where(u >= 0, forward, reverse) + self._junction().cocontent(-u)

    needs_limiting = False

    def spice_lines(self, name, anode, cathode):
        return [f"M{name} {anode} {anode} {cathode} {cathode} {self.model_name} W={self.W!r} L={self.L!r}"]

    def spice_models(self):
        return [f".model {self.model_name} NMOS(LEVEL=1 VTO={self.VTO!r} KP={self.KP!r} "
                f"LAMBDA={self.LAMBDA!r} IS={self.IS!r})"]
