"""Named hardware targets, as data (docs/devices.md gives the source of every figure), and
`resolve_hardware`, which merges a preset with field-by-field overrides and validates them."""
from __future__ import annotations

from dataclasses import fields

from .spec import SECTIONS, HardwareSpec, section_types, validate

# HfOx 1T1R RRAM with write-verify: range and programming error from Wan et al., Nature 2022
# (NeuRRAM; aihwkit's ReRamWan2022NoiseModel fit, g_max 40 µS, σ up to ≈2 µS); ~1 % read
# noise (aihwkit's note for that model); pulsed soft-bounds step from aihwkit's
# ReRamSBPresetDevice (fit to Gong et al., Nat. Commun. 2018): dw_min 0.002 of a range of 2,
# i.e. 0.001 of ours; stuck shares are our assumption
_RRAM = {
    "device": {"g_min": 1e-6, "g_max": 40e-6, "prog_noise": "constant", "prog_sigma": 2e-6,
               "read_noise": "relative", "read_sigma": 0.01, "drift": "none",
               "stuck_g_min": 0.005, "stuck_g_max": 0.005,
               "dw_min": 0.001, "up_down": 0.0, "gamma": 1.0, "c2c": 1.0},
    "variation": {"is_sigma": 0.1, "vto_sigma": 0.01, "gain_sigma": 0.01, "offset_sigma": 1e-3},
    "drift_compensation": False,
}

# HfO2 RRAM in 2T2R differential pairs on 130 nm CMOS (Hirtzlin et al., Front. Neurosci.
# 2020; Laborieux et al., IEEE TCAS-I 2021): each device on (LRS) or off (HRS), a pair
# holding a ternary or binary weight. The conductance range and bit error rates are our
# assumptions, not the papers' measured figures (docs/devices.md, "Ternary and binary pairs")
_PAIR_DEVICES = {"g_min": 2e-6, "g_max": 40e-6, "levels": 2, "bit_error": 1e-3, "read_bit_error": 1e-4}

#: preset name → {"device": {...}, "variation": {...}, "drift_compensation": bool}
PRESETS: dict[str, dict] = {
    # every device exactly what EP asked for; nothing drifts, nothing varies
    "ideal": {"device": {}, "variation": {}, "drift_compensation": False},
    # IBM aihwkit's PCM statistical model (Nandakumar et al. 2019; Joshi et al. 2020)
    "pcm": {
        "device": {"g_min": 0.1e-6, "g_max": 25e-6, "prog_noise": "pcm", "prog_sigma": 1.0,
                   "read_noise": "pcm", "read_sigma": 1.0, "t_read": 250e-9, "drift": "pcm", "t_c": 20.0,
                   # pulsed model: aihwkit's PCM-like soft-bounds figures are not published as a
                   # preset; we reuse the RRAM step with a stronger up/down asymmetry (PCM SET is
                   # gradual, RESET abrupt)
                   "dw_min": 0.002, "up_down": 0.3, "gamma": 1.0, "c2c": 0.5},
        "variation": {},
        "drift_compensation": True,
    },
    "rram": _RRAM,
    # the rram devices read through NeuRRAM's converters (Wan et al., Nature 2022): inputs of up
    # to 4 bits, outputs digitised at up to 8 bits with the range set from the data; the
    # full scale of the inputs is the block's ±1 V (docs/edges.md)
    "neurram": {**_RRAM, "dac": {"bits": 4, "range": 1.0}, "adc": {"bits": 8, "calibrate": True}},
    # EBANA's 4-level conductance rule over the block's default crossbar range, else ideal
    "ebana-4level": {"device": {"g_min": 1e-7, "g_max": 2e-5, "levels": 4}, "variation": {},
                     "drift_compensation": False},
    # the 2T2R pairs with ternary weights {-1, 0, +1}
    "rram-2t2r": {"device": {**_PAIR_DEVICES, "pairs": "ternary", "pair_threshold": 0.5},
                  "variation": {}, "drift_compensation": False},
    # the same devices with binary weights {-1, +1}
    "rram-2t2r-binary": {"device": {**_PAIR_DEVICES, "pairs": "binary"}, "variation": {}, "drift_compensation": False},
}

_SECTIONS = section_types()


def _nest(overrides: dict) -> dict:
    """{'device.g_min': 1e-6} and {'device': {'g_min': 1e-6}} both become the nested form."""
    out: dict = {}
    for key, value in overrides.items():
        if not isinstance(key, str):
            raise ValueError(f"hardware.{key!r}: keys must be strings")
        key = key[len("hardware."):] if key.startswith("hardware.") else key
        head, _, rest = key.partition(".")
        if rest:
            out.setdefault(head, {})
            if not isinstance(out[head], dict):
                raise ValueError(f"hardware.{head}: given both as a value and as a section")
            out[head][rest] = value
        elif isinstance(value, dict):
            if head in out and not isinstance(out[head], dict):
                raise ValueError(f"hardware.{head}: given both as a value and as a section")
            out.setdefault(head, {}).update(value)
        else:
            out[head] = value
    return out


def resolve_hardware(preset: str = "ideal", overrides: dict | None = None) -> HardwareSpec:
    """The preset `preset` with `overrides` applied field by field, validated.

    Raises ValueError starting with the offending dotted key (``hardware.device.g_min=...``)
    for an unknown preset (listing the known ones), an unknown key, or a bad value."""
    if preset not in PRESETS:
        raise ValueError(f"hardware.preset={preset!r}: unknown preset; known: {', '.join(sorted(PRESETS))}")
    if overrides is not None and not isinstance(overrides, dict):
        raise ValueError(f"hardware overrides must be a mapping, got {type(overrides).__name__}")
    base = PRESETS[preset]
    merged = {key: dict(base.get(key, {})) for key in SECTIONS}
    merged["drift_compensation"] = base.get("drift_compensation", True)
    for key, value in _nest(dict(overrides or {})).items():
        if key in ("preset", "name"):
            continue
        if key == "drift_compensation":
            merged[key] = value
            continue
        if key not in _SECTIONS:
            raise ValueError(f"hardware.{key}: unknown key; known: {', '.join(SECTIONS)}, drift_compensation, preset")
        if not isinstance(value, dict):
            raise ValueError(f"hardware.{key}={value!r}: must be a mapping of fields")
        known = [f.name for f in fields(_SECTIONS[key])]
        for field_name, field_value in value.items():
            if field_name not in known:
                raise ValueError(f"hardware.{key}.{field_name}: unknown key; known: {', '.join(known)}")
            merged[key][field_name] = field_value
    spec = HardwareSpec(name=preset, drift_compensation=merged["drift_compensation"],
                        **{key: _SECTIONS[key](**merged[key]) for key in SECTIONS})
    return validate(spec)
