"""`analog.layers`: the analog block's hidden layers, one spec each, checked and normalised.

    layers:
      - {type: locally_connected2d, kernel: [3, 3], strides: [1, 1], filters: 2, input_shape: [8, 8, 1]}
      - {type: dense, units: 32}

padding: 'valid' (default) or 'same' (Keras's rule, ⌈H / stride⌉ positions; analog.local).

Every error names the layer index and key (``analog.layers[1].kernel=...``). The normalised
specs have every key filled in (a later locally connected layer's input_shape from the
layer before it); `widths` are the node counts of the layers, which `analog.hidden` then
holds (so code that reads the widths keeps working)."""
from __future__ import annotations

from typing import Any

TYPES = ("dense", "locally_connected2d")
COMMON = {"type", "diodes", "amplifier", "gain"}
KEYS = {"dense": COMMON | {"units"},
        "locally_connected2d": COMMON | {"filters", "kernel", "strides", "input_shape", "padding"}}


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _pair(where: str, key: str, value, default=None) -> list[int]:
    if value is None and default is not None:
        return list(default)
    v = [value, value] if _int(value) else value
    if not (isinstance(v, list) and len(v) == 2 and all(_int(a) for a in v)):
        raise ValueError(f"{where}.{key}={value!r}: must be an integer or a list of two integers")
    if min(v) <= 0:
        raise ValueError(f"{where}.{key}={value!r}: must be > 0")
    return list(v)


def check_layers(layers: list, hidden: list[int] | None) -> tuple[list[dict], list[int]]:
    """(normalised specs, widths); ValueError naming analog.layers[i].key. `hidden`: the
    analog.hidden the user gave explicitly (None if not given): must then match the widths."""
    if not isinstance(layers, list) or not layers:
        raise ValueError(f"analog.layers={layers!r}: must be a non-empty list of layer specs")
    out, widths, shape = [], [], None
    for k, spec in enumerate(layers):
        where = f"analog.layers[{k}]"
        norm = _common(where, spec)
        if norm["type"] == "dense":
            u = spec.get("units")
            if not (_int(u) and u > 0):
                raise ValueError(f"{where}.units={u!r}: must be a positive integer")
            norm["units"] = u
            widths.append(u)
            shape = None
        else:
            shape = _local(where, k, spec, norm, widths[-1] if widths else None, shape)
            widths.append(shape[0] * shape[1] * shape[2])
        out.append(norm)
    if hidden is not None and list(hidden) != widths:
        raise ValueError(f"analog.hidden={list(hidden)} and analog.layers (widths {widths}) disagree: "
                         "give analog.layers alone (analog.hidden is its short form for dense layers)")
    return out, widths


def _common(where: str, spec) -> dict[str, Any]:
    """The type and the keys every layer has (diodes, amplifier, gain), checked."""
    if not isinstance(spec, dict):
        raise ValueError(f"{where}={spec!r}: must be a mapping such as {{type: dense, units: 100}}")
    kind = spec.get("type")
    if kind not in TYPES:
        raise ValueError(f"{where}.type={kind!r}: unknown layer type; must be one of {', '.join(TYPES)}")
    unknown = sorted(set(spec) - KEYS[kind])
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown key for a {kind} layer; allowed: "
                         f"{', '.join(sorted(KEYS[kind]))}")
    norm: dict[str, Any] = {"type": kind}
    for key in ("diodes", "amplifier"):
        v = spec.get(key, True)
        if not isinstance(v, bool):
            raise ValueError(f"{where}.{key}={v!r}: must be true or false")
        norm[key] = v
    g = spec.get("gain")
    if g is not None and (isinstance(g, bool) or not isinstance(g, (int, float)) or not 1 <= g <= 1000):
        raise ValueError(f"{where}.gain={g!r}: must be a number in [1, 1000] (or omitted: analog.gain)")
    norm["gain"] = None if g is None else float(g)
    return norm


def _local(where: str, k: int, spec: dict, norm: dict, prev: int | None, shape) -> list[int]:
    """A locally connected layer's keys into `norm`; returns its output shape [H, W, filters]."""
    f = spec.get("filters")
    if not (_int(f) and f > 0):
        raise ValueError(f"{where}.filters={f!r}: must be a positive integer")
    kernel = _pair(where, "kernel", spec.get("kernel"))
    strides = _pair(where, "strides", spec.get("strides"), default=(1, 1))
    pad = spec.get("padding", "valid")
    if pad not in ("valid", "same"):
        raise ValueError(f"{where}.padding={pad!r}: must be 'valid' or 'same' (zero pixels at V_ref "
                         "around the image)")
    given = spec.get("input_shape")
    if given is not None and not (isinstance(given, list) and len(given) == 3
                                  and all(_int(a) and a > 0 for a in given)):
        raise ValueError(f"{where}.input_shape={given!r}: must be three positive integers [H, W, C]")
    if k == 0 and given is None:
        raise ValueError(f"{where}.input_shape: required on a first layer (the layout [H, W, C] of "
                         "the block's inputs)")
    if k > 0:
        if given is None and shape is None:
            raise ValueError(f"{where}.input_shape: required after a dense layer (a layout [H, W, C] "
                             f"of its {prev} nodes)")
        if given is not None and given[0] * given[1] * given[2] != prev:
            raise ValueError(f"{where}.input_shape={given!r}: the layers do not chain, the previous "
                             f"layer has {prev} nodes, not {given[0] * given[1] * given[2]}")
    in_shape = list(given) if given is not None else list(shape)
    H, W = in_shape[0], in_shape[1]
    if kernel[0] > H or kernel[1] > W:
        raise ValueError(f"{where}.kernel={kernel}: larger than the input ({H}, {W}) "
                         f"(input_shape={in_shape})")
    if pad == "same":
        oh, ow = -(-H // strides[0]), -(-W // strides[1])
    else:
        oh, ow = (H - kernel[0]) // strides[0] + 1, (W - kernel[1]) // strides[1] + 1
    norm.update(filters=f, kernel=kernel, strides=strides, input_shape=in_shape, padding=pad)
    return [oh, ow, f]


def layer_specs(analog) -> tuple:
    """The hidden layers of a validated `analog` section as analog's typed layer specs
    (analog.layers when given, else dense layers of analog.hidden's sizes)."""
    from analog.specs import DenseLayerSpec, LocalLayerSpec
    if analog.layers is None:
        return tuple(DenseLayerSpec(u) for u in analog.hidden)
    out = []
    for spec in analog.layers:
        common = {"diodes": spec["diodes"], "amplifier": spec["amplifier"], "gain": spec["gain"]}
        if spec["type"] == "dense":
            out.append(DenseLayerSpec(spec["units"], **common))
        else:
            out.append(LocalLayerSpec(spec["filters"], tuple(spec["kernel"]), tuple(spec["strides"]),
                                      tuple(spec["input_shape"]), spec["padding"], **common))
    return tuple(out)
