"""The on-disk manifest of a saved encoder (``encoder.json``) and the classes it may name.

A manifest holds the encoder's class path, its constructor parameters, whether it was
fitted and its training history; the encoder's own state files sit beside it.  Loading
resolves the class path without importing anything the caller did not choose.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import to_jsonable_python

from .errors import EncoderContractError, MissingEncoderError

MANIFEST_NAME = "encoder.json"
MANIFEST_FORMAT = "digital-encoder"
MANIFEST_VERSION = 1


def import_object(path: str, *, what: str = "object") -> Any:
    """Import ``"package.module:attr.sub"`` (or ``"package.module.attr"``).

    Raises :class:`EncoderContractError` naming the path and the underlying error.
    """
    if not isinstance(path, str) or not path.strip():
        raise EncoderContractError(f"{what} path must be a non-empty string, got {path!r}")
    if ":" in path:
        module_name, _, attr_path = path.partition(":")
    else:
        module_name, _, attr_path = path.rpartition(".")
    if not module_name or not attr_path:
        raise EncoderContractError(
            f"{what} path {path!r} must look like 'package.module:name'"
        )
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:
        raise EncoderContractError(
            f"cannot import module {module_name!r} for {what} {path!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise EncoderContractError(
                f"{what} {path!r}: {obj!r} has no attribute {part!r}"
            ) from exc
    return obj


def class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


# Encoder classes a manifest may name, by class path. A manifest never causes an import of
# its own: its class must be built in, defined by a module the process already imported
# (every Encoder subclass registers itself), registered, or come from a module the caller
# trusts (the one a config's plug-in spec names).
_BUILTIN_CLASSES = {"digital.cnn:CNNEncoder", "digital.mlp:MLPEncoder", "digital.pca:PCAEncoder"}
_ENCODER_CLASSES: dict[str, type] = {}


def register_encoder_class(cls: type) -> type:
    """Make ``load_encoder`` accept manifests naming ``cls`` (usable as a class decorator)."""
    if not isinstance(cls, type):
        raise TypeError(f"register_encoder_class: {cls!r} is not a class")
    _ENCODER_CLASSES[class_path(cls)] = cls
    return cls


def encoder_class(name: str, *, modules: tuple[str, ...] = (), where: str = "encoder manifest") -> type:
    """The encoder class a manifest names, without importing anything the caller did not
    choose (see ``_ENCODER_CLASSES``); an unknown name raises EncoderContractError."""
    if name in _ENCODER_CLASSES:
        return _ENCODER_CLASSES[name]
    module = name.partition(":")[0] if ":" in name else name.rpartition(".")[0]
    if name in _BUILTIN_CLASSES or (module and module in modules):
        cls = import_object(name, what="encoder class")
        if isinstance(cls, type):
            return cls
    known = ", ".join(sorted(_BUILTIN_CLASSES | set(_ENCODER_CLASSES)))
    raise EncoderContractError(
        f"{where} names the class {name!r}, which is not a registered encoder class (known: {known}); a "
        f"plug-in's class loads when the config's digital.encoder names its module, or after "
        f"digital.register_encoder_class")


class _Manifest(BaseModel):
    """What ``encoder.json`` must hold (other entries are kept as they are)."""
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    format: Literal["digital-encoder"]
    version: int = MANIFEST_VERSION
    class_: str = Field(alias="class", min_length=1)
    params: dict[str, Any]
    fitted: bool = True
    history: dict[str, list] = {}


def read_manifest(directory: str | Path) -> dict:
    """Read and check the JSON manifest written by :meth:`Encoder.save`."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise MissingEncoderError(f"no encoder manifest {MANIFEST_NAME!r} in {str(directory)!r}")
    try:
        return _Manifest.model_validate_json(path.read_text()).model_dump(by_alias=True)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(map(str, err["loc"])) or "the file"
        raise EncoderContractError(f"encoder manifest {str(path)!r} is not a {MANIFEST_FORMAT} manifest: "
                                   f"{where}: {err['msg']}") from None


def _jsonable(value: Any) -> Any:
    """Plain JSON data (tuples as lists, numpy scalars as numbers), by pydantic's serialiser."""
    return to_jsonable_python(value, fallback=lambda v: v.item() if isinstance(v, np.generic) else v)


def write_manifest(directory: Path, cls: type, params: dict, fitted: bool, history: dict) -> None:
    """Write ``encoder.json`` for an encoder of class ``cls`` into ``directory``."""
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "class": class_path(cls),
        "params": _jsonable(params),
        "fitted": bool(fitted),
        "history": _jsonable(history),
    }
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True))
