"""Creating, loading and checking encoders, including users' plug-ins.

Plug-ins: ``make_encoder("package.module:factory", **params)`` imports ``factory`` and
calls it with ``params``; it must return an object honouring the encoder contract
(see :data:`REQUIRED_METHODS` / :data:`REQUIRED_ATTRIBUTES`; subclassing
:class:`digital.base.Encoder` is the easy way).  ``load_encoder(directory)`` reads the
manifest written by ``save`` and calls ``<class>.load(directory)`` of the class it names
(only a known class: nothing a file names is imported on its own), so a plug-in that does
not subclass ``Encoder`` must write a compatible manifest
(``{"format": "digital-encoder", "class": "pkg.mod:Class", "params": {...}}``) and give
its class a ``load`` classmethod.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import DigitalInputError
from .errors import EncoderContractError
from .manifest import encoder_class, import_object, read_manifest, register_encoder_class

__all__ = ["make_encoder", "load_encoder", "check_encoder", "register_encoder", "register_encoder_class",
           "available_encoders", "EncoderContractError", "REQUIRED_METHODS", "REQUIRED_ATTRIBUTES"]

REQUIRED_METHODS = ("fit", "embed", "fit_targets", "predict_classes", "evaluate", "save", "get_params")
REQUIRED_ATTRIBUTES = ("embedding_dim", "v_low", "v_high")

_BUILTIN: dict[str, str] = {
    "cnn": "digital.cnn:CNNEncoder",
    "mlp": "digital.mlp:MLPEncoder",
    "pca": "digital.pca:PCAEncoder",
}
_REGISTERED: dict[str, Callable[..., Any]] = {}


def register_encoder(name: str, factory: Callable[..., Any]) -> None:
    """Make ``make_encoder(name, **params)`` call ``factory(**params)``."""
    if not isinstance(name, str) or not name or ":" in name:
        raise DigitalInputError(f"encoder name must be a non-empty string without ':', got {name!r}")
    if not callable(factory):
        raise DigitalInputError(f"factory for {name!r} must be callable, got {factory!r}")
    _REGISTERED[name.lower()] = factory


def available_encoders() -> list[str]:
    return sorted(set(_BUILTIN) | set(_REGISTERED))


def _describe(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _check_interface(obj: Any, source: str) -> None:
    for name in REQUIRED_ATTRIBUTES:
        if not hasattr(obj, name):
            raise EncoderContractError(f"encoder from {source} ({_describe(obj)}) lacks the attribute {name!r}")
    for name in REQUIRED_METHODS:
        if not callable(getattr(obj, name, None)):
            raise EncoderContractError(f"encoder from {source} ({_describe(obj)}) lacks the method {name!r}()")
    if not callable(getattr(type(obj), "load", None)):
        raise EncoderContractError(
            f"encoder from {source} ({_describe(obj)}) lacks a classmethod 'load(directory)'"
        )
    dim = getattr(obj, "embedding_dim")
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise EncoderContractError(
            f"encoder from {source}: embedding_dim must be a positive int, got {dim!r}"
        )
    try:
        lo, hi = float(obj.v_low), float(obj.v_high)
    except (TypeError, ValueError) as exc:
        raise EncoderContractError(f"encoder from {source}: v_low/v_high must be numbers ({exc})") from exc
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise EncoderContractError(
            f"encoder from {source}: needs finite v_low < v_high, got v_low={lo}, v_high={hi}"
        )


def make_encoder(spec: str, **params: Any) -> Any:
    """Create an encoder: ``"cnn" | "mlp" | "pca"`` (or a name added with
    :func:`register_encoder`), or ``"package.module:factory"`` for a plug-in.

    Parameter errors (ValueError) from the constructor propagate unchanged; import
    failures and objects that lack parts of the contract raise
    :class:`EncoderContractError`.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise DigitalInputError(f"encoder spec must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    key = spec.lower()
    if key in _REGISTERED:
        factory, source = _REGISTERED[key], f"registered name {spec!r}"
    elif key in _BUILTIN:
        factory, source = import_object(_BUILTIN[key], what="encoder"), f"{spec!r}"
    elif ":" in spec:
        factory, source = import_object(spec, what="encoder factory"), f"factory {spec!r}"
        if not callable(factory):
            raise EncoderContractError(f"encoder factory {spec!r} is not callable (got {factory!r})")
    else:
        raise DigitalInputError(
            f"unknown encoder spec {spec!r}: use one of {available_encoders()} "
            f"or 'package.module:factory'"
        )
    obj = factory(**params)
    _check_interface(obj, source)
    register_encoder_class(type(obj))     # its saved manifests load in this process
    return obj


def load_encoder(directory: str | Path, *, modules: tuple[str, ...] | list[str] = ()) -> Any:
    """Load any encoder saved with ``save(directory)``, dispatching on its manifest.

    The manifest's class must be a known encoder class (built in, an imported
    ``Encoder`` subclass, registered, or made by ``make_encoder`` in this process);
    ``modules`` names plug-in modules the caller trusts to import (the file alone never
    imports anything)."""
    manifest = read_manifest(directory)
    where = f"encoder manifest in {str(directory)!r}"
    cls = encoder_class(manifest["class"], modules=tuple(modules), where=where)
    loader = getattr(cls, "load", None)
    if not callable(loader):
        raise EncoderContractError(f"encoder class {manifest['class']!r} has no load(directory)")
    obj = loader(directory, modules=tuple(modules)) if _takes_modules(loader) else loader(directory)
    _check_interface(obj, f"directory {str(directory)!r}")
    return obj


def _takes_modules(loader) -> bool:
    import inspect
    try:
        return "modules" in inspect.signature(loader).parameters
    except (TypeError, ValueError):
        return False


def check_encoder(
    encoder: Any,
    sample_images: Any,
    embedding_dim: int | None = None,
    v_low: float | None = None,
    v_high: float | None = None,
    *,
    labels: Any = None,
    tol: float = 1e-9,
) -> np.ndarray:
    """Check that ``encoder`` honours the contract; return its embedding of the sample.

    Checks: the required attributes/methods exist; the encoder's own ``embedding_dim``,
    ``v_low``, ``v_high`` match the requested ones (when given); ``embed(sample_images)``
    is an array of shape ``(N, embedding_dim)``, finite, within ``[v_low, v_high]``
    (± ``tol``).  Encoders that cannot embed before ``fit`` (``embeds_before_fit =
    False`` and ``is_fitted`` false, e.g. an unfitted :class:`~digital.pca.PCAEncoder`)
    are fitted on the sample first when ``labels`` are given (``epochs=1, verbose=0``);
    otherwise an :class:`EncoderContractError` asks for that.  Raises
    :class:`EncoderContractError` naming the first problem found.
    """
    _check_interface(encoder, "check_encoder")
    dim, lo, hi = _required_shape(encoder, embedding_dim, v_low, v_high)
    n = int(np.shape(sample_images)[0]) if np.ndim(sample_images) else 0
    if not getattr(encoder, "embeds_before_fit", True) and not getattr(encoder, "is_fitted", True):
        if labels is None:
            raise EncoderContractError(
                f"{_describe(encoder)} cannot embed before fit: fit it first or pass labels= "
                "to check_encoder so it is fitted on the sample"
            )
        encoder.fit(sample_images, labels, epochs=1, verbose=0)
    try:
        out = encoder.embed(sample_images)
    except EncoderContractError:
        raise
    except Exception as exc:
        raise EncoderContractError(
            f"{_describe(encoder)}.embed failed on images of shape {np.shape(sample_images)}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    _check_embedding(out, n, dim, lo, hi, tol)
    return out


def _required_shape(encoder: Any, embedding_dim, v_low, v_high) -> tuple[int, float, float]:
    """(embedding_dim, v_low, v_high) the caller requires (the encoder's own where None),
    after checking that the encoder declares the same."""
    expected = {
        "embedding_dim": embedding_dim if embedding_dim is not None else encoder.embedding_dim,
        "v_low": v_low if v_low is not None else encoder.v_low,
        "v_high": v_high if v_high is not None else encoder.v_high,
    }
    for name, want in expected.items():
        got = getattr(encoder, name)
        if got != want:
            raise EncoderContractError(f"encoder {name} is {got!r} but {want!r} is required")
    return int(expected["embedding_dim"]), float(expected["v_low"]), float(expected["v_high"])


def _check_embedding(out: Any, n: int, dim: int, lo: float, hi: float, tol: float) -> None:
    """``out`` is a finite float array (n, dim) within [lo, hi] ± tol, or EncoderContractError."""
    if not isinstance(out, np.ndarray):
        raise EncoderContractError(f"embed must return a numpy array, got {type(out).__name__}")
    if out.shape != (n, dim):
        raise EncoderContractError(f"embed returned shape {out.shape}, expected ({n}, {dim})")
    if not np.issubdtype(out.dtype, np.floating):
        raise EncoderContractError(f"embed must return floats, got dtype {out.dtype}")
    if not np.all(np.isfinite(out)):
        bad = int(np.sum(~np.isfinite(out)))
        raise EncoderContractError(f"embed returned {bad} non-finite value(s) (NaN/inf)")
    if out.size:
        mn, mx = float(out.min()), float(out.max())
        if mn < lo - tol or mx > hi + tol:
            raise EncoderContractError(
                f"embed values out of range: min {mn:.6g}, max {mx:.6g} seen; "
                f"allowed [{lo:.6g}, {hi:.6g}] (tolerance {tol:g})"
            )
