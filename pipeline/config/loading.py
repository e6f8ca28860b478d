"""Reading configs: YAML file, `--set key=value` overrides, validation into the typed
`RootConfig`, and its plain-mapping form for the edges (`config_dict`, `flatten`)."""
from __future__ import annotations

import copy
import typing
from collections.abc import Iterable
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from .errors import ConfigError, _short, _type_name, _unwrap, from_validation_error
from .schema import RootConfig
from .yaml_text import _check_size, _StrictLoader, load_yaml

__all__ = ["validate_config", "load_config", "config_dict", "parse_override", "apply_overrides", "flatten"]


def validate_config(raw) -> RootConfig:
    """The validated config (every default filled in): what commands and stages receive."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a mapping of keys, got {type(raw).__name__}")
    try:
        model = RootConfig.model_validate(raw)
    except ValidationError as exc:
        raise from_validation_error(exc, RootConfig) from None
    except ValueError as exc:   # a check outside pydantic's own (e.g. a hardware preset)
        raise ConfigError(str(exc)) from None
    return model


def config_dict(cfg: RootConfig) -> dict:
    """The config as the plain nested mapping a YAML file holds (keys as written there):
    for the edges that store, log or patch it (config.yaml, MLflow params, sweep trials)."""
    return cfg.model_dump(by_alias=True)


def parse_override(item: str) -> tuple[list[str], object]:
    """'analog.hidden=[64, 32]' -> (['analog', 'hidden'], [64, 32]); the value is YAML."""
    key, sep, text = str(item).partition("=")
    key = key.strip()
    parts = key.split(".")
    if not sep or not key or not all(p.strip() for p in parts):
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. --set analog.gain=2.0")
    try:
        value = yaml.load(text, Loader=_StrictLoader)   # noqa: S506 (a SafeLoader subclass)
    except RecursionError:
        raise ConfigError(f"--set {key}: value nested too deeply for a config") from None
    except yaml.YAMLError as exc:
        problem = str(getattr(exc, "problem", None) or "not valid YAML")
        raise ConfigError(f"--set {key}: value {_short(text)} is not valid YAML ({problem})") from None
    _check_size(value, f"--set {key}")
    return [p.strip() for p in parts], value


def _field(model, name: str):
    """The field `name` of a section model (None if there is no such section field)."""
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    return next((f for n, f in model.model_fields.items() if (f.alias or n) == name), None)


def apply_overrides(raw: dict, overrides: Iterable[str]) -> dict:
    """A copy of the raw (unvalidated) config with each `key.path=value` applied."""
    out = copy.deepcopy(raw or {})
    for item in overrides:
        parts, value = parse_override(item)
        node, model = out, RootConfig
        for depth, part in enumerate(parts[:-1]):
            info, where = _field(model, part), ".".join(parts[:depth + 1])
            model = _unwrap(info.annotation) if info is not None else None
            if info is not None and not (isinstance(model, type) and issubclass(model, (BaseModel, dict))) \
                    and typing.get_origin(model) is not dict:
                raise ConfigError(f"--set {'.'.join(parts)}: {where} is a value ({_type_name(info.annotation)}), "
                                  f"not a section")
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {'.'.join(parts)}: {where} is {_short(child)}, not a section")
            node = child
        node[parts[-1]] = value
    return out


MAX_CONFIG_BYTES = 1 << 20     # a config is a few kB


def _read_yaml(path: Path):
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder, not a YAML file")
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    if not path.is_file():       # a FIFO would block the read, /dev/zero never end it
        raise ConfigError(f"config file {path} is not a regular file (a device, FIFO or socket)")
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror or exc})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is larger than {MAX_CONFIG_BYTES >> 20} MiB; a config is a few kB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not a text file (byte {exc.start} is not UTF-8)") from None
    return load_yaml(text, f"config file {path}")


def load_config(path, overrides: Iterable[str] = ()) -> RootConfig:
    """Read, override (`--set` items, values parsed as YAML) and validate a config file."""
    path = Path(path)
    raw = _read_yaml(path)
    overrides = list(overrides)
    where = f"{path} with --set overrides" if overrides else str(path)
    try:
        if overrides:
            validate_config(raw)          # the file's own errors first, named as the file's
        else:
            return validate_config(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        return validate_config(apply_overrides(raw, overrides))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _scalars(node: dict, head: str):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _scalars(value, f"{head}{key}.")
        else:
            yield f"{head}{key}", ",".join(map(str, value)) if isinstance(value, list) else value


def flatten(cfg: RootConfig | dict, prefix: str = "") -> dict:
    """Dotted names -> scalars (lists joined by commas): every value can be an MLflow param."""
    return dict(_scalars(config_dict(cfg) if isinstance(cfg, BaseModel) else cfg, prefix))
