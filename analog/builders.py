"""The EBANA-style dense block and its one set of defaults (`BLOCK_DEFAULTS`), shared by
`build_dense_network`, `make_device` and the experiment config schema."""
from __future__ import annotations

import copy

import numpy as np

from .devices import Device, IdealDiode, MOSDiode, ShockleyDiode
from .layers import Amplification, BiasVoltage, Concatenate, CurrentLayer, Dense, DiodeLayer, InputVoltage
from .local import LocallyConnected2D, pixel_nodes

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
    return build_network(features, classes, [{"type": "dense", "units": int(u)} for u in hidden], g_min=g_min,
                         g_max=g_max, init=init, gain=gain, bias_levels=bias_levels, device=device, up_bias=up_bias,
                         down_bias=down_bias, vref=vref, gmin=gmin, seed=seed, name=name)


def build_network(features: int, classes: int, layers, *, g_min=_D["g_min"], g_max=_D["g_max"], init=_D["init"],
                  gain=_D["gain"], bias_levels=tuple(_D["bias_levels"]), device: Device | None = None,
                  up_bias=_D["diode"]["up_bias"], down_bias=_D["diode"]["down_bias"], vref=_D["vref"],
                  gmin=_D["gmin"], seed=0, name="analog_block"):
    """The block described layer by layer: `layers` is a list of hidden-layer specs,
    {"type": "dense", "units": n} or {"type": "locally_connected2d", "filters": f, "kernel": [kh, kw],
    "strides": [sh, sw], "input_shape": [H, W, C]} (input_shape: the layout of the features
    for a first layer, whose ± copies become 2C channels; later layers take the previous
    layer's (OH, OW, filters) when it is omitted), each optionally with "diodes" (bool,
    default True), "amplifier" (bool, default True) and "gain" (default `gain`). Every layer
    gets its own bias sources; an output crossbar to 2·classes nodes follows."""
    from .model import AnalogModel
    device = device or make_device()
    x = InputVoltage(features, name="input")
    nodes, shape = x, None         # shape: (H, W, C) layout of `nodes` after a locally connected layer
    for k, spec in enumerate(layers):
        where = f"layers[{k}]"
        kind = spec.get("type", "dense")
        bias = BiasVoltage(list(bias_levels), name=f"bias{k + 1}")
        opts = dict(g_min=g_min, g_max=g_max, init=init, seed=seed * 1000 + k)
        if kind == "dense":
            h = Dense(int(spec["units"]), name=f"dense{k + 1}", **opts)(
                Concatenate(name=f"concat{k + 1}")([nodes, bias]))
            shape = None
        elif kind == "locally_connected2d":
            given = spec.get("input_shape")
            if k == 0:
                if given is None or int(np.prod(given)) != features:
                    raise ValueError(f"{where}.input_shape={given!r}: must hold the block's {features} inputs")
                img, in_shape = pixel_nodes(x, tuple(given), name="pixels"), (given[0], given[1], 2 * given[2])
            else:
                in_shape = tuple(given) if given is not None else shape
                if in_shape is None or int(np.prod(in_shape)) != len(nodes):
                    raise ValueError(f"{where}.input_shape={given!r}: must lay out the previous layer's "
                                     f"{len(nodes)} nodes (as (H, W, C))")
                img = nodes
            try:
                lc = LocallyConnected2D(int(spec["filters"]), spec["kernel"], spec.get("strides", (1, 1)),
                                        input_shape=in_shape, padding=spec.get("padding", "valid"),
                                        name=f"lc{k + 1}", **opts)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
            h = lc(Concatenate(name=f"concat{k + 1}")([img, bias]))
            shape = lc.output_shape
        else:
            raise ValueError(f"{where}.type={kind!r}: must be 'dense' or 'locally_connected2d'")
        if spec.get("diodes", True):
            h = DiodeLayer("up", up_bias, device, name=f"diode_up{k + 1}")(h)
            h = DiodeLayer("down", down_bias, device, name=f"diode_down{k + 1}")(h)
        if spec.get("amplifier", True):
            g = spec.get("gain")
            h = Amplification(gain if g is None else g, name=f"amp{k + 1}")(h)
        nodes = h
    k = len(layers)
    bias = BiasVoltage(list(bias_levels), name=f"bias{k + 1}")
    out = Dense(2 * classes, g_min=g_min, g_max=g_max, init=init, seed=seed * 1000 + k, name=f"dense{k + 1}")(
        Concatenate(name=f"concat{k + 1}")([nodes, bias]))
    y = CurrentLayer(name="nudge")(out)
    return AnalogModel(x, y, vref=vref, gmin=gmin, name=name)
