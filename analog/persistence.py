"""Save and load an AnalogModel as plain data: `model.json` (the layer graph, devices,
options and training state) and `arrays.npz` (conductances, per-element device parameters,
optimiser state, histograms). Nothing is pickled and nothing named in a file is imported:
layer, device, optimiser and perturbation types are looked up by name in registries here
(`register_device`, `analog.losses.register_loss`, `analog.optimizers.register_optimizer`,
`register_perturbation`); an unknown name is refused with the list of known ones.

model.json (format "mixsig-analog-model", version 1):
    name, vref, gmin, epoch, config (the experiment config, if any),
    layers:  [{"type": "Dense", "config": {...}}, ...]   one entry per layer object
    graph:   [{"layer": i, "inputs": [node ids]}, ...]  one entry per layer call, in order;
             node id k is the output of graph entry k
    inputs, outputs: node ids of the model's input and output nodes
    training: null, or loss, optimizer (config + state), beta, nudging, engine,
              engine_options, perturbation, gradient (ep | exact)
    history:  per-epoch logs and epochs; histograms are in arrays.npz
Array-valued fields (a device's per-element parameters, say) are written as
{"array": "<key in arrays.npz>"}.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

from . import devices as _devices
from . import layers as L
from .circuit import _topological_layers
from .devices import Device
from .errors import AnalogInputError, MissingModelError
from .model_size import check_size as _check_size
from .local import LocallyConnected2D, Rearrange
from .losses import LOSSES, get_loss
from .optimizers import OPTIMIZERS, Optimizer

FORMAT, VERSION = "mixsig-analog-model", 1
MODEL_FILE, ARRAYS_FILE, LEGACY_FILE = "model.json", "arrays.npz", "model.pkl"

# ---- registries -------------------------------------------------------------------------
DEVICE_TYPES: dict[str, type] = {}
PERTURBATION_TYPES: dict[str, type] = {}
# names defined by analog.hardware (a fixed module of this package, imported on demand so
# that loading a plain model never pulls it in)
_HARDWARE_NAMES = ("analog.hardware",)


def register_device(cls):
    """Class decorator: make a Device subclass (a dataclass) loadable by its class name."""
    if not (isinstance(cls, type) and issubclass(cls, Device) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"register_device: {cls!r} must be a dataclass subclassing analog.devices.Device")
    DEVICE_TYPES[cls.__name__] = cls
    return cls


def register_perturbation(cls):
    """Class decorator: make a perturbation (`perturb`, `get_config`, constructor taking its
    config as keyword arguments or a `from_config` classmethod) loadable by class name."""
    PERTURBATION_TYPES[cls.__name__] = cls
    return cls


for _obj in vars(_devices).values():
    if isinstance(_obj, type) and issubclass(_obj, Device) and _obj is not Device and dataclasses.is_dataclass(_obj):
        register_device(_obj)


def _lookup(table: dict, name, what: str):
    if name not in table:
        for module in _HARDWARE_NAMES:     # extensions register themselves on import
            importlib.import_module(module)
    if name not in table:
        raise AnalogInputError(f"{MODEL_FILE}: unknown {what} type {name!r}; known: {', '.join(sorted(table))}")
    return table[name]


class _Arrays:
    """Collects arrays for arrays.npz and hands out their keys."""

    def __init__(self):
        self.data: dict[str, np.ndarray] = {}

    def put(self, key: str, value) -> dict:
        self.data[key] = np.asarray(value)
        return {"array": key}


def _encode(value, arrays: _Arrays, key: str):
    if isinstance(value, np.ndarray):
        return arrays.put(key, value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, list)):
        return [_encode(v, arrays, f"{key}/{i}") for i, v in enumerate(value)]
    return value


def _decode(value, arrays):
    if isinstance(value, dict) and set(value) == {"array"}:
        return np.array(arrays[value["array"]])
    if isinstance(value, dict):
        return {k: _decode(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    return value


# ---- layers ------------------------------------------------------------------------------
def _device_config(device: Device, arrays: _Arrays, key: str) -> dict:
    name = type(device).__name__
    if DEVICE_TYPES.get(name) is not type(device):
        raise AnalogInputError(f"cannot save device {name}: register it with analog.persistence.register_device")
    return {"type": name, "params": {f.name: _encode(getattr(device, f.name), arrays, f"{key}/{f.name}")
                                     for f in dataclasses.fields(device) if f.init}}


def _device_from_config(cfg: dict, arrays) -> Device:
    cls = _lookup(DEVICE_TYPES, cfg.get("type"), "device")
    return cls(**{k: _decode(v, arrays) for k, v in cfg["params"].items()})


def _layer_config(layer, arrays: _Arrays, key: str) -> tuple[str, dict]:
    if isinstance(layer, L._InputLayer):
        return "InputVoltage", {"name": layer.name, "features": layer.features}
    if isinstance(layer, L._BiasLayer):
        return "BiasVoltage", {"name": layer.name, "levels": list(layer.levels)}
    if isinstance(layer, LocallyConnected2D):
        return "LocallyConnected2D", {**_layer_config_dense(layer), "filters": layer.filters,
                                      "kernel": list(layer.kernel), "strides": list(layer.strides),
                                      "input_shape": list(layer.input_shape), "padding": layer.padding}
    if isinstance(layer, Rearrange):
        return "Rearrange", {"name": layer.name, "order": list(layer.order)}
    if isinstance(layer, L.Dense):
        return "Dense", {"name": layer.name, "units": layer.units, "g_min": layer.g_min, "g_max": layer.g_max,
                         "init": layer.init, "lr_scale": layer.lr_scale, "trainable": layer.trainable,
                         "seed": None if layer.seed is None else int(layer.seed)}
    if isinstance(layer, L.DiodeLayer):
        return "DiodeLayer", {"name": layer.name, "direction": layer.direction, "bias": layer.bias,
                              "device": _device_config(layer.device, arrays, f"{key}/device")}
    if isinstance(layer, L.Amplification):
        return "Amplification", {"name": layer.name, "gain": layer.gain}
    if isinstance(layer, (L.Concatenate, L.CurrentLayer)):
        return type(layer).__name__, {"name": layer.name}
    raise AnalogInputError(f"cannot save layer '{layer.name}' of type {type(layer).__name__}")


def _layer_config_dense(layer) -> dict:
    return {"name": layer.name, "g_min": layer.g_min, "g_max": layer.g_max, "init": layer.init,
            "lr_scale": layer.lr_scale, "trainable": layer.trainable,
            "seed": None if layer.seed is None else int(layer.seed)}


LAYER_TYPES = {
    "InputVoltage": lambda c, a: L.InputVoltage(c["features"], name=c["name"]),
    "BiasVoltage": lambda c, a: L.BiasVoltage(c["levels"], name=c["name"]),
    "Concatenate": lambda c, a: L.Concatenate(name=c["name"]),
    "Dense": lambda c, a: L.Dense(**c),
    "LocallyConnected2D": lambda c, a: LocallyConnected2D(**c),
    "Rearrange": lambda c, a: Rearrange(c["order"], name=c["name"]),
    "DiodeLayer": lambda c, a: L.DiodeLayer(c["direction"], c["bias"], _device_from_config(c["device"], a),
                                            name=c["name"]),
    "Amplification": lambda c, a: L.Amplification(c["gain"], name=c["name"]),
    "CurrentLayer": lambda c, a: L.CurrentLayer(name=c["name"]),
}
_SOURCES = ("InputVoltage", "BiasVoltage")


def graph_to_config(model, arrays: _Arrays) -> dict:
    nodes = _topological_layers(model.outputs)
    if model.inputs not in nodes:
        nodes.insert(0, model.inputs)
    node_id = {id(n): k for k, n in enumerate(nodes)}
    layer_id: dict[int, int] = {}
    layers, graph = [], []
    for n in nodes:
        if id(n.layer) not in layer_id:
            layer_id[id(n.layer)] = len(layers)
            kind, cfg = _layer_config(n.layer, arrays, f"layer{len(layers)}")
            layers.append({"type": kind, "config": cfg})
        graph.append({"layer": layer_id[id(n.layer)], "inputs": [node_id[id(p)] for p in n.parents]})
    return {"layers": layers, "graph": graph, "inputs": node_id[id(model.inputs)],
            "outputs": node_id[id(model.outputs)]}


def graph_from_config(d: dict, arrays):
    objects, nodes = {}, []
    for k, entry in enumerate(d["graph"]):
        spec = d["layers"][entry["layer"]]
        kind, cfg = spec.get("type"), spec["config"]
        build = _lookup(LAYER_TYPES, kind, "layer")
        parents = [nodes[i] for i in entry["inputs"]]
        if kind in _SOURCES:
            nodes.append(build(cfg, arrays))
            continue
        layer = objects.get(entry["layer"])
        if layer is None:
            layer = objects[entry["layer"]] = build(cfg, arrays)
        nodes.append(layer(parents) if kind == "Concatenate" else layer(*parents))
    return nodes[d["inputs"]], nodes[d["outputs"]]


# ---- training state ------------------------------------------------------------------------
def _unsaved(what: str, obj, why: str) -> str:
    msg = f"{what} {type(obj).__name__} was not saved ({why}); compile the loaded model again to train it"
    warnings.warn(msg, stacklevel=4)
    return msg


def _optimizer_entry(opt, arrays: _Arrays, notes: list) -> dict | None:
    if OPTIMIZERS.get(opt.name) is not type(opt):
        notes.append(_unsaved("optimizer", opt, f"name {opt.name!r} is not registered: use "
                                                "analog.optimizers.register_optimizer"))
        return None
    try:
        own = _Arrays()
        config = _encode_tree(opt.get_config(), own, "optimizer_config")
        meta, opt_arrays = opt.get_state()
        json.dumps([config, meta])
    except Exception as exc:          # an extension's config that is not plain data
        notes.append(_unsaved("optimizer", opt, f"{type(exc).__name__}: {exc}"))
        return None
    arrays.data.update(own.data)
    for k, v in opt_arrays.items():
        arrays.put(f"optimizer/{k}", v)
    return {"config": config, "state": meta}


def _perturbation_entry(p, arrays: _Arrays, notes: list) -> dict | None:
    if p is None:
        return None
    if PERTURBATION_TYPES.get(type(p).__name__) is not type(p) or not hasattr(p, "get_config"):
        notes.append(_unsaved("perturbation", p, "give it get_config() and register it with "
                                                 "analog.persistence.register_perturbation"))
        return None
    try:
        own = _Arrays()
        config = _encode_tree(p.get_config(), own, "perturbation")
        json.dumps(config)
    except Exception as exc:
        notes.append(_unsaved("perturbation", p, f"{type(exc).__name__}: {exc}"))
        return None
    arrays.data.update(own.data)
    return {"type": type(p).__name__, "config": config}


def _training_config(model, arrays: _Arrays) -> dict | None:
    if not model.compiled:
        return None
    notes: list[str] = []
    if LOSSES.get(model.loss.name) is not type(model.loss):
        notes.append(_unsaved("loss", model.loss, f"name {model.loss.name!r} is not registered: use "
                                                  "analog.losses.register_loss"))
        return {"loss": None, "not_saved": notes}
    return {"loss": model.loss.get_config(), "optimizer": _optimizer_entry(model.optimizer, arrays, notes),
            "beta": model.beta, "nudging": model.nudging, "engine": model.engine_name,
            "engine_options": model.engine_options, "gradient": model.gradient,
            "algorithm": getattr(model, "algorithm", "ep"), "cep_steps": getattr(model, "cep_steps", 10),
            "perturbation": _perturbation_entry(model.perturbation, arrays, notes), "not_saved": notes}


def _encode_tree(value, arrays, key):
    if isinstance(value, dict):
        return {k: _encode_tree(v, arrays, f"{key}/{k}") for k, v in value.items()}
    return _encode(value, arrays, key)


def _decode_tree(value, arrays):
    if isinstance(value, dict) and set(value) != {"array"}:
        return {k: _decode_tree(v, arrays) for k, v in value.items()}
    return _decode(value, arrays)


def _restore_training(model, t: dict, arrays) -> None:
    model.not_saved = list(t.get("not_saved", []))
    if t.get("loss") is None:       # the model loads uncompiled
        return
    loss_cfg = dict(t["loss"])
    loss = get_loss(loss_cfg.pop("name"), **loss_cfg)
    optimizer = None
    if t.get("optimizer"):
        ocfg = _decode_tree(t["optimizer"]["config"], arrays)
        cls = _lookup(OPTIMIZERS, ocfg.get("name"), "optimizer")
        optimizer = cls.from_config(ocfg)
        optimizer.set_state(t["optimizer"]["state"],
                            {k[len("optimizer/"):]: arrays[k] for k in arrays.files if k.startswith("optimizer/")})
    pert = None
    if t.get("perturbation"):
        pcls = _lookup(PERTURBATION_TYPES, t["perturbation"]["type"], "perturbation")
        pcfg = _decode_tree(t["perturbation"]["config"], arrays)
        pert = pcls.from_config(pcfg) if hasattr(pcls, "from_config") else pcls(**pcfg)
    model.compile(loss=loss, optimizer=optimizer if optimizer is not None else "sgd", beta=t["beta"],
                  nudging=t["nudging"], engine=t["engine"], engine_options=t["engine_options"], perturbation=pert,
                  gradient=t.get("gradient", "ep"),
                  **({"algorithm": t.get("algorithm", "ep"), "cep_steps": t.get("cep_steps", 10)}
                     if optimizer is not None else {}))
    if optimizer is None:   # evaluate/scores/gradients work; fit asks for compile() first
        model.optimizer = None


# ---- save / load -----------------------------------------------------------------------------
def save_model(model, path) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    arrays = _Arrays()
    desc = {"format": FORMAT, "version": VERSION, "name": model.name, "vref": model.circuit.vref,
            "gmin": model.circuit.gmin, "epoch": model.epoch, **graph_to_config(model, arrays)}
    for k, layer in enumerate(model.dense_layers):
        arrays.put(f"conductances/{k}", layer.G)
    desc["conductances"] = [layer.name for layer in model.dense_layers]
    desc["training"] = _training_config(model, arrays)
    h = model.history
    hist_names = []
    for e, hists in enumerate(h.histograms):
        hist_names.append(list(hists))
        for i, (counts, edges) in enumerate(hists.values()):
            arrays.put(f"histograms/{e}/{i}/counts", counts)
            arrays.put(f"histograms/{e}/{i}/edges", edges)
    desc["history"] = {"epoch": list(h.epoch), "logs": h.history, "histograms": hist_names}
    desc["config"] = model.config
    text = json.dumps(desc, indent=1, default=_json_default)
    with open(path / ARRAYS_FILE, "wb") as fh:
        np.savez(fh, **arrays.data)
    (path / MODEL_FILE).write_text(text)
    return path


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _refuse_legacy(path: Path, why: str):
    raise AnalogInputError(
        f"{path}: {why}. This release reads only model.json + arrays.npz (no pickle). Re-export the "
        f"model with the previous release (AnalogModel.load(folder).save(new_folder) there), or, if the "
        f"folder has the old model.json with its experiment config and conductances.npz, rebuild it "
        f"with: python -m pipeline.system.analog_block --migrate {path} NEW_FOLDER (optimiser state is not kept)")


def load_model(path, cls):
    """The model saved in folder `path`, as an instance of `cls` (AnalogModel)."""
    path = Path(path)
    file = path / MODEL_FILE
    if not file.is_file():
        if (path / LEGACY_FILE).is_file():
            _refuse_legacy(path, "holds an old pickled model (model.pkl)")
        raise MissingModelError(f"no saved analog model in {path} (missing {MODEL_FILE})")
    try:
        desc = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise AnalogInputError(f"{file}: not valid JSON ({exc})") from None
    if not isinstance(desc, dict) or desc.get("format") != FORMAT:
        _refuse_legacy(path, f"{MODEL_FILE} is not a '{FORMAT}' description (an old summary file?)")
    if desc.get("version") != VERSION:
        raise AnalogInputError(f"{file}: format version {desc.get('version')!r}, this release reads version {VERSION}")
    if not (path / ARRAYS_FILE).is_file():
        raise MissingModelError(f"{path}: {MODEL_FILE} without its {ARRAYS_FILE}")
    _check_size(desc, file, MODEL_FILE)
    try:
        with np.load(path / ARRAYS_FILE, allow_pickle=False) as arrays:
            return _build(desc, path, arrays, cls)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise AnalogInputError(f"{path / ARRAYS_FILE}: damaged or truncated ({exc})") from None


def _build(desc: dict, path: Path, arrays, cls):
    from .history import History
    try:
        inputs, outputs = graph_from_config(desc, arrays)
        model = cls(inputs, outputs, vref=desc["vref"], gmin=desc["gmin"], name=desc["name"])
        names = [layer.name for layer in model.dense_layers]
        if names != desc["conductances"]:
            raise AnalogInputError(f"dense layers {names} do not match the saved conductances {desc['conductances']}")
        model.set_conductances([arrays[f"conductances/{k}"] for k in range(len(names))])
        if desc.get("training"):
            _restore_training(model, desc["training"], arrays)
        hist = desc.get("history") or {}
        model.history = History(history={k: list(v) for k, v in hist.get("logs", {}).items()},
                                epoch=list(hist.get("epoch", [])))
        for e, keys in enumerate(hist.get("histograms", [])):
            model.history.histograms.append(
                {k: (arrays[f"histograms/{e}/{i}/counts"], arrays[f"histograms/{e}/{i}/edges"])
                 for i, k in enumerate(keys)})
    except KeyError as exc:
        raise AnalogInputError(f"{path}: saved model is incomplete (missing {exc})") from None
    except (TypeError, AttributeError, IndexError) as exc:
        raise AnalogInputError(f"{path}: saved model is malformed ({type(exc).__name__}: {exc})") from None
    model.epoch = int(desc["epoch"])
    model.config = desc.get("config") or {}
    return model
