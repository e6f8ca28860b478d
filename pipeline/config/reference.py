"""The schema for people and editors: JSON Schema, and the Markdown reference docs/config.md."""
from __future__ import annotations

import json
import typing
from pathlib import Path

from annotated_types import MinLen
from pydantic import BaseModel

from .errors import _type_name, _unwrap, range_text
from .schema import HardwareConfig, RootConfig

__all__ = ["config_json_schema", "render_config_reference", "write_config_reference", "REFERENCE_PATH"]

REFERENCE_PATH = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def config_json_schema() -> dict:
    """JSON Schema (draft 2020-12) of an experiment config, for editors and other tools."""
    schema = RootConfig.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "mixsig experiment config",
            **{k: v for k, v in schema.items() if k != "title"}}


def _model_of(annotation):
    inner = _unwrap(annotation)
    return inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None


def _default(info) -> str:
    if info.is_required():
        return "*required*"
    return f"`{json.dumps(info.get_default(call_default_factory=True))}`"


def _allowed(info) -> str:
    ann = info.annotation
    base = ann if typing.get_origin(ann) is list else _unwrap(ann)   # Optional[X] -> X
    if typing.get_origin(base) is typing.Literal:
        return ", ".join(f"`{c}`" for c in typing.get_args(base))
    custom = [getattr(getattr(m, "func", None), "allowed", None) for m in info.metadata]
    if any(custom):
        return next(c for c in custom if c)
    parts = [range_text(info.metadata)]
    if typing.get_origin(base) is list and typing.get_origin(typing.get_args(base)[0]) is typing.Annotated:
        item = range_text(typing.get_args(typing.get_args(base)[0])[1:])
        parts.append(f"each {item}" if item else "")
    if any(isinstance(m, MinLen) for m in info.metadata):
        parts.append("non-empty")
    return "; ".join(p for p in parts if p) or "any"


def _type(info) -> str:
    base = info.annotation if typing.get_origin(info.annotation) is list else _unwrap(info.annotation)
    return "str" if typing.get_origin(base) is typing.Literal else _type_name(info.annotation)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def _rows(model: type[BaseModel], prefix: str, sections: list):
    rows = []
    for name, info in model.model_fields.items():
        key = prefix + (info.alias or name)
        sub = _model_of(info.annotation)
        if sub is not None:
            sections.append((key, sub, info.description or ""))
            continue
        rows.append(f"| `{key}` | {_cell(_type(info))} | {_cell(_default(info))} "
                    f"| {_cell(_allowed(info))} | {_cell(info.description or '')} |")
    return rows


def render_config_reference() -> str:
    """Markdown: every key with its type, default, allowed range and doc, section by section."""
    out = ["# Experiment config reference", "",
           "Generated from the schema in `pipeline/config/schema.py` by "
           "`python -m pipeline.config`; do not edit by hand (a test checks it is up to date).",
           "", "A config is a YAML file. Every key below may be left out (its default is used) except "
           "those marked *required*. A single value can be changed on the command line with "
           "`--set key.path=value` (the value is read as YAML, e.g. `--set analog.hidden=[64]`). "
           "Unknown keys, wrong types and values out of range are errors that name the key.", "",
           "Rules across keys (checked for every command): `analog.g_min < analog.g_max`; "
           "`digital.v_low < digital.v_high`, both within ±`analog.input_amplitude` (the encoder's "
           "voltages are the analog block's inputs); `training.phases` only with `training.algorithm: ep`, "
           "`gradient: ep` and `engine: native`; the `hardware` preset and its field overrides are "
           "checked by `analog.hardware.resolve_hardware`. The defaults of `analog`, `analog.diode` and "
           "`training` are those of analog's typed specs (`analog.specs.BlockSpec`, `TrainingSpec`, read "
           "through `analog.builders.BLOCK_DEFAULTS`), so a block built in Python and one built from a "
           "config agree. A section must be a mapping: leave it out (or write `{}`) for its defaults; "
           "`null` (every key commented out), `[]` or `0` is an error naming the section. `mixsig config schema` prints the JSON Schema "
           "for editors; `mixsig config show CONFIG` prints a config with every default filled in.", ""]
    sections = [("", RootConfig, "top-level keys")]
    while sections:
        key, model, doc = sections.pop(0)
        title = f"`{key}`" if key else "Top level"
        out += [f"## {title}", "", doc[:1].upper() + doc[1:] + ".", ""]
        if model is HardwareConfig:
            out += [" ".join((HardwareConfig.__doc__ or "").split()), ""]
        nested: list = []
        out += ["| key | type | default | allowed | description |", "| --- | --- | --- | --- | --- |"]
        out += _rows(model, f"{key}." if key else "", nested)
        out.append("")
        sections[0:0] = nested
    return "\n".join(out)


def write_config_reference(path: Path | str = REFERENCE_PATH) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_config_reference())
    return path

