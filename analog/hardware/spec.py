"""What a hardware target is: the conductance device, the variation of the circuit's other
elements, and how a trained block maps onto them (plain data, validated field by field).

Every error names its key the way the config spells it (``hardware.device.g_min=...``), so
a bad ``hardware:`` section is reported before any work starts. docs/devices.md gives each
field's meaning, its formula and the source of each preset's figures.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np

PROG_KINDS = ("none", "constant", "relative", "pcm")
READ_KINDS = ("none", "relative", "pcm")
DRIFT_KINDS = ("none", "pcm", "constant")


@dataclass(frozen=True)
class DeviceSpec:
    """One resistive memory device (conductances in siemens, times in seconds).

    Programming (once per chip): ``levels`` (None: continuous; an int >= 2: that many evenly
    spaced conductances over [g_min, g_max]); ``prog_noise`` 'none' | 'constant' (σ =
    prog_sigma S) | 'relative' (σ = prog_sigma·G) | 'pcm' (the aihwkit PCM polynomial, times
    prog_sigma, 1 = published); stuck shares at g_min and at g_max.
    Drift: 'none' | 'pcm' (ν = |N(μ_ν, σ_ν)| per device from the PCM fit, reference time t_c) |
    'constant' (ν ~ N(nu_mean, nu_std) for every device, as given).
    Read noise (each solve): 'none' | 'relative' (σ = read_sigma·G(t)) | 'pcm' (the 1/f model
    with t_read, times read_sigma, 1 = published).
    Pulsed updates (in-situ training), on w = (G − g_min)/(g_max − g_min): each pulse moves w
    by dw_min·(1 ± up_down)·soft-bound factor·(1 + c2c·ξ); gamma = 0 is a constant step with
    hard bounds, gamma = 1 the usual soft-bounds device. With levels, a pulse moves one level.
    Pairs (pairs.py): 'none' | 'ternary' | 'binary' — each weight a pair (G+, G−) of two-state
    devices (g_max on, g_min off); pair_threshold ternarises a real weight (|w|/max|w| above it
    is ±1); bit_error: share of written devices left in the wrong state; read_bit_error: share
    of devices misread on each read.
    """

    g_min: float = 1e-7
    g_max: float = 2e-5
    levels: int | None = None
    prog_noise: str = "none"
    prog_sigma: float = 0.0
    read_noise: str = "none"
    read_sigma: float = 0.0
    t_read: float = 250e-9
    drift: str = "none"
    t_c: float = 20.0
    nu_mean: float = 0.0
    nu_std: float = 0.0
    stuck_g_min: float = 0.0
    stuck_g_max: float = 0.0
    dw_min: float = 0.001
    up_down: float = 0.0
    gamma: float = 1.0
    c2c: float = 0.0
    pairs: str = "none"
    pair_threshold: float = 0.5
    bit_error: float = 0.0
    read_bit_error: float = 0.0

    @property
    def n_states(self) -> int:
        """Pulses from g_min to g_max at the nominal step (the 'number of states')."""
        return int(round(1.0 / self.dw_min))

    @property
    def span(self) -> float:
        return self.g_max - self.g_min


@dataclass(frozen=True)
class VariationSpec:
    """Device-to-device variation of the circuit's other elements, drawn once per chip:
    diode saturation current IS ← IS·exp(N(0, is_sigma)) (log-normal), threshold VTO ← VTO +
    N(0, vto_sigma) V, amplifier gain A ← A·(1 + N(0, gain_sigma)), output offset N(0,
    offset_sigma) V."""

    is_sigma: float = 0.0
    vto_sigma: float = 0.0
    gain_sigma: float = 0.0
    offset_sigma: float = 0.0

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) > 0 for f in fields(self))


@dataclass(frozen=True)
class DacSpec:
    """Input digital-to-analog converter, one per input feature (converters.py): ``bits``
    (None: ideal), full scale ±``range`` V around V_ref, ``noise`` V rms added per conversion."""

    bits: int | None = None
    range: float = 1.0
    noise: float = 0.0


@dataclass(frozen=True)
class AdcSpec:
    """Output analog-to-digital converter, one per differential output (converters.py):
    ``bits`` (None: ideal), full scale ±``range`` V, or calibrated from a calibration set when
    ``calibrate`` (the largest |y| seen); ``noise`` V rms per conversion; ``offset_sigma`` V,
    a per-converter offset drawn once per chip."""

    bits: int | None = None
    range: float = 1.0
    calibrate: bool = False
    noise: float = 0.0
    offset_sigma: float = 0.0


@dataclass(frozen=True)
class WireSpec:
    """Crossbar wire resistance (wires.py): ``r_segment`` Ω of metal between neighbouring
    cells along every row and column line (0: ideal wires)."""

    r_segment: float = 0.0


SECTIONS = ("device", "variation", "dac", "adc", "wires")


@dataclass(frozen=True)
class HardwareSpec:
    """A named hardware target. ``drift_compensation``: apply the calibration-read factor
    (chip.py) when reading at t > 0. ``dac``, ``adc``, ``wires``: the chip's edges."""

    name: str = "ideal"
    device: DeviceSpec = field(default_factory=DeviceSpec)
    variation: VariationSpec = field(default_factory=VariationSpec)
    drift_compensation: bool = True
    dac: DacSpec = field(default_factory=DacSpec)
    adc: AdcSpec = field(default_factory=AdcSpec)
    wires: WireSpec = field(default_factory=WireSpec)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "HardwareSpec":
        """The spec `to_dict` wrote (unknown keys and bad values: ValueError naming the key)."""
        if not isinstance(data, dict):
            raise ValueError(f"hardware: expected a mapping, got {type(data).__name__}")
        parts = {}
        for key, kind in section_types().items():
            given = data.get(key, {})
            known = [f.name for f in fields(kind)]
            bad = sorted(set(given) - set(known)) if isinstance(given, dict) else [None]
            if bad:
                raise ValueError(f"hardware.{key}.{bad[0]}: unknown key; known: {', '.join(known)}")
            parts[key] = kind(**given)
        unknown = sorted(set(data) - {"name", "drift_compensation", *SECTIONS})
        if unknown:
            raise ValueError(f"hardware.{unknown[0]}: unknown key")
        return validate(cls(name=str(data.get("name", "custom")), drift_compensation=data.get("drift_compensation", True),
                            **parts))


def section_types() -> dict:
    """Section name → the dataclass of its fields."""
    return {"device": DeviceSpec, "variation": VariationSpec, "dac": DacSpec, "adc": AdcSpec, "wires": WireSpec}


def _bad(key: str, value, why: str) -> ValueError:
    return ValueError(f"hardware.{key}={value!r}: {why}")


def _number(key: str, value, *, lo: float | None = 0.0, strict: bool = False, hi: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _bad(key, value, "must be a finite number")
    if lo is not None and (value < lo or (strict and value == lo)):
        raise _bad(key, value, f"must be {'>' if strict else '>='} {lo}")
    if hi is not None and value > hi:
        raise _bad(key, value, f"must be <= {hi}")


def _kind(key: str, value, kinds) -> None:
    if value not in kinds:
        raise _bad(key, value, f"must be one of {', '.join(kinds)}")


def validate(spec: HardwareSpec) -> HardwareSpec:
    """Check every field; the first bad one raises ValueError naming its dotted key."""
    d = spec.device
    _number("device.g_min", d.g_min, strict=True)
    _number("device.g_max", d.g_max, strict=True)
    if d.g_min >= d.g_max:
        raise _bad("device.g_min", d.g_min, f"must be < g_max={d.g_max!r}")
    if d.levels is not None:
        if isinstance(d.levels, bool) or not isinstance(d.levels, (int, np.integer)) or d.levels < 2:
            raise _bad("device.levels", d.levels, "must be null (continuous) or an integer >= 2")
    _kind("device.prog_noise", d.prog_noise, PROG_KINDS)
    _kind("device.read_noise", d.read_noise, READ_KINDS)
    _kind("device.drift", d.drift, DRIFT_KINDS)
    for key in ("prog_sigma", "read_sigma", "nu_std", "c2c"):
        _number(f"device.{key}", getattr(d, key))
    _number("device.nu_mean", d.nu_mean, lo=None)
    _number("device.t_read", d.t_read, strict=True)
    _number("device.t_c", d.t_c, strict=True)
    for key in ("stuck_g_min", "stuck_g_max"):
        _number(f"device.{key}", getattr(d, key), hi=1.0)
    if d.stuck_g_min + d.stuck_g_max > 1.0:
        raise _bad("device.stuck_g_max", d.stuck_g_max,
                   f"stuck shares sum to {d.stuck_g_min + d.stuck_g_max!r} (> 1) with stuck_g_min={d.stuck_g_min!r}")
    _number("device.dw_min", d.dw_min, strict=True, hi=1.0)
    _number("device.up_down", d.up_down, lo=-1.0, hi=1.0)
    if abs(d.up_down) == 1.0:
        raise _bad("device.up_down", d.up_down, "must lie strictly between -1 and 1 (one direction would never move)")
    _number("device.gamma", d.gamma)
    _check_pairs(d)
    v = spec.variation
    for f in fields(v):
        _number(f"variation.{f.name}", getattr(v, f.name))
    if not isinstance(spec.drift_compensation, bool):
        raise _bad("drift_compensation", spec.drift_compensation, "must be true or false")
    _edges(spec)
    return spec


MAX_BITS = 24


def _edges(spec: HardwareSpec) -> None:
    """Converters and wires: bits in 1..24 (or null), ranges > 0, noises and resistance >= 0."""
    for name in ("dac", "adc"):
        conv = getattr(spec, name)
        bits = conv.bits
        if bits is not None and (isinstance(bits, bool) or not isinstance(bits, (int, np.integer))
                                 or not 1 <= bits <= MAX_BITS):
            raise _bad(f"{name}.bits", bits, f"must be null (ideal) or an integer from 1 to {MAX_BITS}")
        _number(f"{name}.range", conv.range, strict=True)
        _number(f"{name}.noise", conv.noise)
    _number("adc.offset_sigma", spec.adc.offset_sigma)
    if not isinstance(spec.adc.calibrate, bool):
        raise _bad("adc.calibrate", spec.adc.calibrate, "must be true or false")
    _number("wires.r_segment", spec.wires.r_segment)


def _check_pairs(d: DeviceSpec) -> None:
    _kind("device.pairs", d.pairs, ("none", "ternary", "binary"))
    _number("device.pair_threshold", d.pair_threshold, hi=1.0)
    if d.pair_threshold == 1.0:
        raise _bad("device.pair_threshold", d.pair_threshold, "must be < 1 (no weight would ever be ±1)")
    for key in ("bit_error", "read_bit_error"):
        _number(f"device.{key}", getattr(d, key), hi=0.5)
    if d.pairs != "none" and d.levels != 2:
        raise _bad("device.levels", d.levels, f"must be 2 for pairs={d.pairs!r} (each device on or off)")


def check_read_time(t) -> float:
    """A read happens at t >= 0 seconds after programming."""
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
        raise ValueError(f"hardware.t={t!r}: read time must be a finite number of seconds")
    if t < 0:
        raise ValueError(f"hardware.t={t!r}: read time before programming (must be >= 0 s)")
    return float(t)
