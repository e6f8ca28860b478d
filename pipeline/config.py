"""Experiment configs: YAML files validated against one declarative schema.

An unknown key, a wrong type or an out-of-range value is a ConfigError naming the dotted
key, the value and what is allowed. Defaults fill what a file leaves out, and `flatten`
turns the nested result into dotted names so every value can be an MLflow param.
"""
from __future__ import annotations

import copy
import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class ConfigError(Exception):
    """A config file is missing or holds a value the schema does not allow."""


@dataclass(frozen=True)
class Field:
    types: tuple
    default: Any = None
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False
    choices: tuple | None = None
    nullable: bool = False
    required: bool = False
    item: "Field | None" = None      # for lists
    doc: str = ""


def F(types, default=None, **kw) -> Field:
    return Field(types if isinstance(types, tuple) else (types,), default, **kw)


NUM = (int, float)

SCHEMA: dict = {
    "name": F(str, required=True, doc="experiment name (also the MLflow experiment unless mlflow.experiment is set)"),
    "seed": F(int, 0, min=0, doc="seed for splits, initialisation and shuffling"),
    "data": {
        "dataset": F(str, "fashion_mnist", choices=("fashion_mnist", "iris", "wine", "xor"), doc="data set"),
        "path": F(str, None, nullable=True, doc="folder with the Fashion-MNIST gzip IDX files"),
        "validation_fraction": F(NUM, 0.1, min=0, max=0.5, min_exclusive=True, max_exclusive=True,
                                 doc="share of the training data held out for validation"),
        "test_fraction": F(NUM, 0.2, min=0, max=0.5, min_exclusive=True, max_exclusive=True,
                           doc="share held out for test (tabular data; Fashion-MNIST has its own test set)"),
        "limit_train": F(int, None, min=1, nullable=True, doc="stratified slice of the training set"),
        "limit_test": F(int, None, min=1, nullable=True, doc="stratified slice of the test set"),
        "xor_samples": F(int, 200, min=8, doc="xor: number of samples"),
        "xor_noise": F(NUM, 0.1, min=0, doc="xor: Gaussian noise on the corners"),
    },
    "analog": {
        "hidden": F(list, [100], item=F(int, min=1), doc="hidden layer sizes"),
        "vref": F(NUM, 0.0, doc="reference (common-mode) voltage, V"),
        "input_amplitude": F(NUM, 1.0, min=0, min_exclusive=True, doc="inputs span V_ref ± this, V"),
        "g_min": F(NUM, 1e-7, min=0, min_exclusive=True, doc="smallest device conductance, S"),
        "g_max": F(NUM, 2e-5, min=0, min_exclusive=True, doc="largest device conductance, S"),
        "init": F(str, "uniform", choices=("uniform", "glorot"), doc="conductance initialiser"),
        "gain": F(NUM, 4.0, min=1, max=1000, doc="amplifier gain A"),
        "bias_levels": F(list, [1.0, -1.0], item=F(NUM), doc="bias sources per layer, V relative to V_ref"),
        "gmin": F(NUM, 1e-12, min=0, doc="shunt conductance from every free node to ground, S"),
        "diode": {
            "model": F(str, "shockley", choices=("shockley", "ideal", "mos"), doc="diode device"),
            "is": F(NUM, 1e-12, min=0, min_exclusive=True, doc="Shockley saturation current IS, A"),
            "n": F(NUM, 1.0, min=0, min_exclusive=True, doc="Shockley emission coefficient N"),
            "rs": F(NUM, 0.0, min=0, doc="Shockley series resistance RS, ohm"),
            "up_bias": F(NUM, -0.3, doc="bias of the diodes clamping from above, V relative to V_ref"),
            "down_bias": F(NUM, 0.3, doc="bias of the diodes clamping from below, V relative to V_ref"),
            "threshold": F(NUM, 0.3, doc="ideal diode threshold / MOS VTO, V"),
            "r_on": F(NUM, 100.0, min=0, min_exclusive=True, doc="ideal diode on-resistance, ohm"),
            "smoothing": F(NUM, 0.01, min=0, min_exclusive=True, doc="ideal diode knee width, V"),
            "kp": F(NUM, 1e-4, min=0, min_exclusive=True, doc="MOS transconductance parameter KP, A/V²"),
            "lambda": F(NUM, 0.0, min=0, doc="MOS channel-length modulation LAMBDA, 1/V"),
            "w": F(NUM, 1e-6, min=0, min_exclusive=True, doc="MOS channel width W, m"),
            "l": F(NUM, 1e-6, min=0, min_exclusive=True, doc="MOS channel length L, m"),
        },
    },
    "training": {
        "engine": F(str, "native", choices=("native", "ngspice"), doc="circuit simulator used for training"),
        "loss": F(str, "mse", choices=("mse", "cross_entropy"), doc="cost on the differential outputs"),
        "temperature": F(NUM, 1.0, min=0, min_exclusive=True, doc="cross-entropy: softmax(y / T)"),
        "mse_midpoint": F(NUM, 0.0, doc="MSE: targets are midpoint ± amplitude"),
        "mse_amplitude": F(NUM, 0.5, min=0, min_exclusive=True, doc="MSE: target amplitude, V"),
        "beta": F(NUM, 1e-6, min=0, min_exclusive=True, doc="nudging strength: I = −β ∂C/∂y, A"),
        "nudging": F(str, "symmetric", choices=("symmetric", "positive"), doc="EP nudging"),
        "optimizer": {
            "name": F(str, "adam", choices=("adam", "sgd", "momentum"), doc="optimiser on the conductances"),
            "lr": F(NUM, 0.01, min=0, min_exclusive=True, doc="learning rate (normalised device units)"),
            "momentum": F(NUM, 0.9, min=0, max=1, max_exclusive=True, doc="momentum coefficient"),
            "schedule": F(str, "none", choices=("none", "step", "cosine"), doc="learning-rate schedule"),
            "step_size": F(int, 10, min=1, doc="step schedule: epochs per decay"),
            "step_gamma": F(NUM, 0.5, min=0, max=1, min_exclusive=True, doc="step schedule: decay factor"),
        },
        "epochs": F(int, 10, min=1, doc="EP training epochs"),
        "batch_size": F(int, 32, min=1, doc="EP mini-batch size"),
        "workers": F(int, 2, min=1, doc="ngspice worker processes"),
    },
    "digital": {
        "encoder": F(str, "cnn", doc="cnn | mlp | pca | package.module:factory"),
        "embedding_dim": F(int, 150, min=1, doc="embedding width (= analog block inputs)"),
        "epochs": F(int, 10, min=1, doc="encoder training epochs"),
        "batch_size": F(int, 128, min=1, doc="encoder batch size"),
        "lr": F(NUM, 1e-3, min=0, min_exclusive=True, doc="encoder learning rate"),
        "v_low": F(NUM, -1.0, doc="lowest embedding voltage (relative to V_ref)"),
        "v_high": F(NUM, 1.0, doc="highest embedding voltage (relative to V_ref)"),
        "retrain_epochs": F(int, 2, min=1, doc="epochs of retraining to target embeddings"),
        "target_weight": F(NUM, 1.0, min=0, doc="weight of the target-embedding MSE when retraining"),
        "class_weight": F(NUM, 0.1, min=0, doc="weight of the classification loss when retraining"),
        "params": F(dict, {}, doc="extra encoder constructor parameters, e.g. {filters: [32, 64, 128]} or {hidden: [256]}"),
    },
    "input_optimization": {
        "lr": F(NUM, 0.05, min=0, min_exclusive=True, doc="step size on the input voltages"),
        "steps": F(int, 50, min=1, doc="step budget per sample"),
        "margin": F(NUM, 0.1, min=0, doc="required margin y_true − max other, V"),
        "update": F(str, "normalized", choices=("normalized", "gradient", "sign"),
                    doc="step rule: normalized (largest component moves lr V), gradient (x −= lr·dC/dx), sign"),
        "method": F(str, "ep", choices=("ep", "exact"), doc="input gradient: EP (source currents) or exact (checks)"),
        "batch_size": F(int, 2000, min=1, doc="samples solved together"),
    },
    "cotrain": {
        "rounds": F(int, 1, min=0, doc="input-optimisation / retraining rounds"),
        "analog_epochs": F(int, None, min=1, nullable=True,
                           doc="EP epochs of the analog block in rounds after the first (default: training.epochs)"),
    },
    "baseline": {
        "enabled": F(bool, True, doc="evaluate: train the same dense network by backprop (Keras) on the same embeddings"),
        "epochs": F(int, 10, min=1, doc="baseline training epochs"),
        "batch_size": F(int, 128, min=1, doc="baseline batch size"),
        "lr": F(NUM, 1e-3, min=0, min_exclusive=True, doc="baseline Adam learning rate"),
    },
    "mlflow": {
        "experiment": F(str, None, nullable=True, doc="MLflow experiment (default: name)"),
    },
    "inputs": {
        "from_run": F(str, None, nullable=True, doc="stage commands: MLflow run whose outputs (and their sources) feed the stage"),
        "encoder": F(str, None, nullable=True, doc="stage commands: encoder folder, or run id providing one"),
        "embeddings": F(str, None, nullable=True, doc="stage commands: embeddings folder, or run id providing one"),
        "analog": F(str, None, nullable=True, doc="stage commands: analog model folder, or run id providing one"),
        "targets": F(str, None, nullable=True, doc="stage commands: target-embeddings folder, or run id providing one"),
    },
}

CROSS_CHECKS = [
    (("analog.g_min", "analog.g_max"), lambda a, b: a < b, "must satisfy g_min < g_max"),
    (("digital.v_low", "digital.v_high"), lambda a, b: a < b, "must satisfy v_low < v_high"),
]


def _type_name(types) -> str:
    return " or ".join("number" if t in NUM and len(types) > 1 else t.__name__ for t in types).replace(
        "number or number", "number")


def _check_value(key: str, value, f: Field):
    if value is None:
        if f.nullable or (f.default is None and not f.required):
            return None
        raise ConfigError(f"{key}: null is not allowed; expected {_type_name(f.types)}")
    ok = isinstance(value, f.types) and not (isinstance(value, bool) and bool not in f.types)
    if float in f.types and isinstance(value, str):  # YAML reads 1e-7 as a string
        try:
            value, ok = float(value), True
        except ValueError:
            pass
    if not ok:
        raise ConfigError(f"{key}: {value!r} has type {type(value).__name__}; expected {_type_name(f.types)}")
    if f.choices is not None and value not in f.choices:
        raise ConfigError(f"{key}: {value!r} is not allowed; choose one of {', '.join(map(str, f.choices))}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key}: {value!r} must be finite")
        lo_bad = f.min is not None and (value <= f.min if f.min_exclusive else value < f.min)
        hi_bad = f.max is not None and (value >= f.max if f.max_exclusive else value > f.max)
        if lo_bad or hi_bad:
            lo = "" if f.min is None else (f"> {f.min}" if f.min_exclusive else f">= {f.min}")
            hi = "" if f.max is None else (f"< {f.max}" if f.max_exclusive else f"<= {f.max}")
            raise ConfigError(f"{key}: {value!r} is out of range; allowed: {' and '.join(p for p in (lo, hi) if p)}")
    if isinstance(value, list) and f.item is not None:
        value = [_check_value(f"{key}[{i}]", v, f.item) for i, v in enumerate(value)]
    return value


def _validate(section: dict, schema: dict, prefix: str) -> dict:
    if not isinstance(section, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping of keys, got {type(section).__name__}")
    unknown = [k for k in section if k not in schema]
    if unknown:
        k = unknown[0]
        close = difflib.get_close_matches(str(k), list(schema), n=1)
        hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
        raise ConfigError(f"{prefix}{k}: unknown key{hint}; allowed keys here: {', '.join(schema)}")
    out = {}
    for k, spec in schema.items():
        key = f"{prefix}{k}"
        if isinstance(spec, dict):
            out[k] = _validate(section.get(k) or {}, spec, f"{key}.")
        elif k in section:
            out[k] = _check_value(key, section[k], spec)
        elif spec.required:
            raise ConfigError(f"{key}: required key is missing ({spec.doc})")
        else:
            out[k] = copy.deepcopy(spec.default)  # lists and dicts: never share the schema's default
    return out


def _get(cfg: dict, dotted: str):
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


def validate_config(raw: dict) -> dict:
    cfg = _validate(raw or {}, SCHEMA, "")
    for keys, check, text in CROSS_CHECKS:
        vals = [_get(cfg, k) for k in keys]
        if not check(*vals):
            raise ConfigError(f"{' and '.join(f'{k}={v!r}' for k, v in zip(keys, vals))}: {text}")
    return cfg


def load_config(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    try:
        return validate_config(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def flatten(cfg: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}."))
        elif isinstance(v, list):
            out[key] = ",".join(map(str, v))
        else:
            out[key] = v
    return out


def describe_schema(schema: dict = SCHEMA, prefix: str = "") -> list[str]:
    """One line per key: name, default, doc (for `mixsig data show` and the docs)."""
    lines = []
    for k, spec in schema.items():
        if isinstance(spec, dict):
            lines += describe_schema(spec, f"{prefix}{k}.")
        else:
            lines.append(f"{prefix}{k} = {spec.default!r}  # {spec.doc}")
    return lines
