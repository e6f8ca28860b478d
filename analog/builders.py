"""The EBANA-style dense block and its one set of defaults (`BLOCK_DEFAULTS`), shared by
`build_dense_network`, `make_device` and the experiment config schema."""
from __future__ import annotations

import copy

from .devices import Device, IdealDiode, MOSDiode, ShockleyDiode
from .layers import Amplification, BiasVoltage, Concatenate, CurrentLayer, Dense, DiodeLayer, InputVoltage

#: The one set of defaults of the EBANA-style block: `build_dense_network` and `make_device`
#: use them, and the experiment config schema (pipeline/config/, the `analog` section)
#: takes its defaults from here. Read it, do not modify it (`block_defaults()` gives a copy).
BLOCK_DEFAULTS: dict = {
    "hidden": [100], "vref": 0.0, "g_min": 1e-7, "g_max": 2e-5, "init": "uniform", "gain": 4.0,
    "bias_levels": [1.0, -1.0], "gmin": 1e-12,
    "diode": {"model": "shockley", "is": 1e-12, "n": 1.0, "rs": 0.0, "up_bias": -0.3, "down_bias": 0.3,
              "threshold": 0.3, "r_on": 100.0, "smoothing": 0.01, "kp": 1e-4, "lambda": 0.0, "w": 1e-6,
              "l": 1e-6},
}


def block_defaults() -> dict:
    """A deep copy of `BLOCK_DEFAULTS`."""
    return copy.deepcopy(BLOCK_DEFAULTS)


def make_device(model: str | None = None, **p) -> Device:
    """A device from config values (keys as in the experiment YAML's analog.diode section;
    missing ones from BLOCK_DEFAULTS['diode'], unknown ones refused)."""
    d = BLOCK_DEFAULTS["diode"]
    unknown = sorted(set(p) - set(d))
    if unknown:
        raise ValueError(f"analog.diode.{unknown[0]}: unknown key; known: {', '.join(sorted(d))}")
    p = {**d, **p}
    model = model or d["model"]
    if model == "shockley":
        return ShockleyDiode(IS=p["is"], N=p["n"], RS=p["rs"])
    if model == "ideal":
        return IdealDiode(threshold=p["threshold"], r_on=p["r_on"], smoothing=p["smoothing"])
    if model == "mos":
        return MOSDiode(VTO=p["threshold"], KP=p["kp"], LAMBDA=p["lambda"], W=p["w"], L=p["l"])
    raise ValueError(f"analog.diode.model={model!r} must be 'shockley', 'ideal' or 'mos'")


_D = BLOCK_DEFAULTS


def build_dense_network(features: int, classes: int, hidden=tuple(_D["hidden"]), *, g_min=_D["g_min"],
                        g_max=_D["g_max"], init=_D["init"], gain=_D["gain"], bias_levels=tuple(_D["bias_levels"]),
                        device: Device | None = None, up_bias=_D["diode"]["up_bias"],
                        down_bias=_D["diode"]["down_bias"], vref=_D["vref"], gmin=_D["gmin"], seed=0,
                        name="analog_block"):
    """The EBANA-style block: inputs ± → [crossbar → diodes up/down → amplifier] per hidden
    layer → crossbar → 2·classes output nodes with nudging current sources. Defaults are
    BLOCK_DEFAULTS; returns an AnalogModel (device: make_device() — a Shockley diode with IS = 1e-12 A)."""
    from .model import AnalogModel
    device = device or make_device()
    x = InputVoltage(features, name="input")
    nodes = x
    for k, units in enumerate(hidden):
        bias = BiasVoltage(list(bias_levels), name=f"bias{k + 1}")
        h = Dense(units, g_min=g_min, g_max=g_max, init=init, seed=seed * 1000 + k, name=f"dense{k + 1}")(
            Concatenate(name=f"concat{k + 1}")([nodes, bias]))
        h = DiodeLayer("up", up_bias, device, name=f"diode_up{k + 1}")(h)
        h = DiodeLayer("down", down_bias, device, name=f"diode_down{k + 1}")(h)
        nodes = Amplification(gain, name=f"amp{k + 1}")(h)
    k = len(hidden)
    bias = BiasVoltage(list(bias_levels), name=f"bias{k + 1}")
    out = Dense(2 * classes, g_min=g_min, g_max=g_max, init=init, seed=seed * 1000 + k, name=f"dense{k + 1}")(
        Concatenate(name=f"concat{k + 1}")([nodes, bias]))
    y = CurrentLayer(name="nudge")(out)
    return AnalogModel(x, y, vref=vref, gmin=gmin, name=name)
