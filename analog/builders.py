"""The EBANA-style block built from its typed description (`analog.specs.BlockSpec`), the
named diode devices (`make_device`) and the block's one set of defaults (`BLOCK_DEFAULTS`,
read from the specs' own defaults), which the experiment config schema takes too."""
from __future__ import annotations

import copy
import dataclasses

import numpy as np

from .devices import Device, IdealDiode, MOSDiode, ShockleyDiode
from .errors import SpecError
from .layers import Amplification, BiasVoltage, Concatenate, CurrentLayer, Dense, DiodeLayer, InputVoltage
from .local import LocallyConnected2D, pixel_nodes
from .specs import BlockSpec, DenseLayerSpec, DiodeSpec

#: Parameters of the named devices (`make_device`), as the experiment YAML's analog.diode writes them.
DEVICE_DEFAULTS: dict = {"model": "shockley", "is": 1e-12, "n": 1.0, "rs": 0.0, "threshold": 0.3, "r_on": 100.0,
                         "smoothing": 0.01, "kp": 1e-4, "lambda": 0.0, "w": 1e-6, "l": 1e-6}


def _defaults() -> dict:
    b, d = BlockSpec(), DiodeSpec()
    top = {k: v for k, v in dataclasses.asdict(b).items() if k not in ("layers", "diode", "seed", "name")}
    top["hidden"] = [layer.units for layer in b.layers]
    top["bias_levels"] = list(b.bias_levels)
    top["diode"] = {**DEVICE_DEFAULTS, "up_bias": d.up_bias, "down_bias": d.down_bias}
    return top


#: The one set of defaults of the EBANA-style block, as the experiment YAML's `analog` section
#: writes them: the defaults of `BlockSpec`, `DiodeSpec` and `make_device`, which the config
#: schema (pipeline/config/) takes. Read it, do not modify it (`block_defaults()` gives a copy).
BLOCK_DEFAULTS: dict = _defaults()


def block_defaults() -> dict:
    """A deep copy of `BLOCK_DEFAULTS`."""
    return copy.deepcopy(BLOCK_DEFAULTS)


def make_device(model: str | None = None, **p) -> Device:
    """A device from config values (keys as in the experiment YAML's analog.diode section;
    missing ones from DEVICE_DEFAULTS, unknown ones refused)."""
    d = DEVICE_DEFAULTS
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


def build_dense_network(features: int, classes: int, hidden=(100,), *, device: Device | None = None,
                        up_bias: float = -0.3, down_bias: float = 0.3, **fields) -> "AnalogModel":
    """The block with dense hidden layers of sizes `hidden`, the diodes' device and biases and
    the other `BlockSpec` fields (g_min, g_max, init, gain, bias_levels, vref, gmin, seed,
    name) as keywords: `build_network(features, classes, BlockSpec.dense(hidden, ...))`."""
    diode = DiodeSpec(up_bias=up_bias, down_bias=down_bias, **({} if device is None else {"device": device}))
    return build_network(features, classes, BlockSpec.dense(hidden, diode=diode, **fields))


def build_network(features: int, classes: int, spec: BlockSpec | None = None) -> "AnalogModel":
    """The block `spec` describes (default: `BlockSpec()`) for `features` inputs and `classes`
    differential outputs: per hidden layer its own bias sources, a crossbar (dense or locally
    connected), diodes up and down, an amplifier; then an output crossbar to 2·classes nodes
    with nudging current sources. A layer that does not fit the inputs raises SpecError
    naming `layers[k]`."""
    from .model import AnalogModel
    spec = BlockSpec() if spec is None else spec
    if not isinstance(spec, BlockSpec):
        raise SpecError(f"spec={spec!r}: must be an analog.specs.BlockSpec")
    x = InputVoltage(features, name="input")
    nodes, shape = x, None         # shape: (H, W, C) layout of `nodes` after a locally connected layer
    for k, layer in enumerate(spec.layers):
        bias = BiasVoltage(list(spec.bias_levels), name=f"bias{k + 1}")
        if isinstance(layer, DenseLayerSpec):
            h = Dense(layer.units, name=f"dense{k + 1}", **_crossbar(spec, k))(
                Concatenate(name=f"concat{k + 1}")([nodes, bias]))
            shape = None
        else:
            img, lc = _local_layer(spec, k, x, nodes, shape, features)
            h = lc(Concatenate(name=f"concat{k + 1}")([img, bias]))
            shape = lc.output_shape
        if layer.diodes:
            h = DiodeLayer("up", spec.diode.up_bias, spec.diode.device, name=f"diode_up{k + 1}")(h)
            h = DiodeLayer("down", spec.diode.down_bias, spec.diode.device, name=f"diode_down{k + 1}")(h)
        if layer.amplifier:
            h = Amplification(spec.gain if layer.gain is None else layer.gain, name=f"amp{k + 1}")(h)
        nodes = h
    k = len(spec.layers)
    bias = BiasVoltage(list(spec.bias_levels), name=f"bias{k + 1}")
    out = Dense(2 * classes, name=f"dense{k + 1}", **_crossbar(spec, k))(
        Concatenate(name=f"concat{k + 1}")([nodes, bias]))
    y = CurrentLayer(name="nudge")(out)
    return AnalogModel(x, y, vref=spec.vref, gmin=spec.gmin, name=spec.name)


def _crossbar(spec: BlockSpec, k: int) -> dict:
    """Conductance range, initialiser and seed of crossbar k."""
    return dict(g_min=spec.g_min, g_max=spec.g_max, init=spec.init, seed=spec.seed * 1000 + k)


def _local_layer(spec: BlockSpec, k: int, x, nodes, shape, features: int):
    """(input nodes as an image, the LocallyConnected2D) of locally connected layer k."""
    layer, where = spec.layers[k], f"layers[{k}]"
    given = layer.input_shape
    shown = None if given is None else list(given)      # as the YAML writes it
    if k == 0:
        if given is None or int(np.prod(given)) != features:
            raise SpecError(f"{where}.input_shape={shown!r}: must hold the block's {features} inputs")
        img, in_shape = pixel_nodes(x, given, name="pixels"), (given[0], given[1], 2 * given[2])
    else:
        in_shape = given if given is not None else shape
        if in_shape is None or int(np.prod(in_shape)) != len(nodes):
            raise SpecError(f"{where}.input_shape={shown!r}: must lay out the previous layer's "
                            f"{len(nodes)} nodes (as (H, W, C))")
        img = nodes
    try:
        lc = LocallyConnected2D(layer.filters, layer.kernel, layer.strides, input_shape=in_shape,
                                padding=layer.padding, name=f"lc{k + 1}", **_crossbar(spec, k))
    except ValueError as exc:
        raise SpecError(f"{where}: {exc}") from None
    return img, lc
