"""The encoder contract shared by every digital encoder.

An encoder turns Fashion-MNIST-sized images into an ``embedding_dim``-wide vector of
*voltages* in ``[v_low, v_high]`` (the input range of the analog block).  The mapping
from the encoder's internal activations to volts is part of the encoder's state and is
saved with it.  Every encoder also carries its own 10-class classification head so that
its "digital-only" accuracy can be measured.

Concrete encoders subclass :class:`Encoder` and implement ``_fit`` and ``_fit_targets``
(on checked arrays; or the public ``fit`` and ``fit_targets`` themselves),
``_predict_classes``, ``_embed`` (raw volts, before the final clip), ``_save_state`` and
``_load_state``.  The base class handles parameter storage (sklearn style: the
constructor only stores and validates its arguments), input validation and scaling,
clipping to the voltage range, ``evaluate``, ``get_params`` and the on-disk manifest.
"""

from __future__ import annotations

import abc
import importlib
import inspect
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import to_jsonable_python

from .errors import DigitalInputError, EncoderContractError, MissingEncoderError  # noqa: F401 (re-exported)
# the encoders' parameter checks (pydantic-based), part of the encoder contract's namespace
from .params import check_choice, check_float, check_int, check_int_tuple, check_param, check_seed  # noqa: F401

__all__ = [
    "Encoder",
    "EncoderContractError",
    "MANIFEST_NAME",
    "N_CLASSES",
    "IMAGE_SHAPE",
    "prepare_images",
    "validate_labels",
    "validate_targets",
    "read_manifest",
    "import_object",
    "encoder_class",
    "register_encoder_class",
]

MANIFEST_NAME = "encoder.json"
MANIFEST_FORMAT = "digital-encoder"
MANIFEST_VERSION = 1
N_CLASSES = 10
IMAGE_SHAPE = (28, 28)


# --------------------------------------------------------------------------- inputs
def prepare_images(images: Any, *, name: str = "images") -> np.ndarray:
    """Validate images and return them as float32 ``(N, 28, 28, 1)`` scaled to [0, 1].

    Accepted: arrays of shape ``(N, 28, 28)`` or ``(N, 28, 28, 1)``.  Integer arrays
    are taken to be 0..255 and divided by 255.  Float arrays whose maximum exceeds 1 are
    taken to be on the 0..255 scale too; otherwise they are used as they are.
    """
    arr = np.asarray(images)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.integer)
        or np.issubdtype(arr.dtype, np.floating)
        or arr.dtype == bool
    ):
        raise DigitalInputError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3 or arr.shape[1:] != IMAGE_SHAPE:
        raise DigitalInputError(
            f"{name} must have shape (N, 28, 28) or (N, 28, 28, 1), got shape {arr.shape}"
        )
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise DigitalInputError(
                f"integer {name} must lie in 0..255, got values in "
                f"[{arr.min()}, {arr.max()}]"
            )
        out = arr.astype(np.float32) / np.float32(255.0)
    else:
        out = arr.astype(np.float32)
        if out.size:
            if not np.all(np.isfinite(out)):
                raise DigitalInputError(f"{name} contains NaN or infinite values")
            lo, hi = float(out.min()), float(out.max())
            if lo < 0.0 or hi > 255.0:
                raise DigitalInputError(
                    f"float {name} must lie in [0, 1] (or 0..255), got values in "
                    f"[{lo}, {hi}]"
                )
            if hi > 1.0:
                out = out / np.float32(255.0)
    return out[..., None]


def validate_labels(labels: Any, n: int, *, name: str = "labels") -> np.ndarray:
    """Return labels as int64 ``(n,)`` in 0..9, or raise a ValueError."""
    lab = np.asarray(labels)
    if lab.ndim == 2 and lab.shape[1] == 1:
        lab = lab[:, 0]
    if lab.ndim != 1:
        raise DigitalInputError(f"{name} must have shape (N,), got shape {lab.shape}")
    if lab.shape[0] != n:
        raise DigitalInputError(f"{name} has {lab.shape[0]} entries but there are {n} images")
    if lab.size and not np.issubdtype(lab.dtype, np.integer):
        if not np.issubdtype(lab.dtype, np.floating) or not np.all(lab == np.round(lab)):
            raise DigitalInputError(f"{name} must be integer class indices, got dtype {lab.dtype}")
    lab = lab.astype(np.int64)
    if lab.size and (lab.min() < 0 or lab.max() >= N_CLASSES):
        raise DigitalInputError(
            f"{name} must lie in 0..{N_CLASSES - 1}, got values in [{lab.min()}, {lab.max()}]"
        )
    return lab


def validate_targets(targets: Any, n: int, embedding_dim: int) -> np.ndarray:
    """Return target embeddings as float64 ``(n, embedding_dim)``, or raise a ValueError."""
    t = np.asarray(targets, dtype=np.float64)
    if t.shape != (n, embedding_dim):
        raise DigitalInputError(
            f"target_embeddings must have shape ({n}, {embedding_dim}) "
            f"(N images x embedding_dim), got shape {t.shape}"
        )
    if not np.all(np.isfinite(t)):
        raise DigitalInputError("target_embeddings contains NaN or infinite values")
    return t


# ------------------------------------------------------------------ import helpers
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


def _constructor_signature(cls: type) -> inspect.Signature:
    """What ``cls(...)`` accepts: its ``__init__``'s parameters and, when that ends in
    ``**kwargs`` handed to the parent's ``__init__``, the parent's other parameters (so a
    subclass lists only what it adds or changes, and get_params, repr and the pipeline's
    signature check still see every parameter)."""
    own = list(inspect.signature(cls.__init__).parameters.values())[1:]
    if not any(p.kind is p.VAR_KEYWORD for p in own):
        return inspect.Signature(own)
    parent = next(k for k in cls.__mro__[1:] if "__init__" in k.__dict__)
    names = {p.name for p in own}
    passed_on = [p.replace(kind=p.KEYWORD_ONLY) for p in inspect.signature(parent).parameters.values()
                 if p.name not in names and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return inspect.Signature([p for p in own if p.kind is not p.VAR_KEYWORD] + passed_on)


def _replaced_by_public(self, *args: Any, **kwargs: Any) -> None:
    raise NotImplementedError(f"{type(self).__name__} writes its own fit/fit_targets; the hook is not used")


# ----------------------------------------------------------------------- contract
class Encoder(abc.ABC):
    """Abstract base of all encoders.

    Parameters common to every encoder:

    embedding_dim : int, default 150
        Width of the embedding (= number of analog input voltages).
    v_low, v_high : float, default -1.0, 1.0
        Voltage range of the analog block's inputs; ``embed`` output lies in it.
    seed : int or None, default 0
        Seed for repeatable initialisation and training.

    Fitted attributes: ``history_`` (dict of lists, from the last ``fit`` /
    ``fit_targets``), ``is_fitted``.
    """

    #: Whether ``embed`` works before ``fit`` (True for randomly initialised nets).
    embeds_before_fit: bool = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not inspect.isabstract(cls):   # defined by a module this process chose to import
            register_encoder_class(cls)

    def __init__(
        self,
        embedding_dim: int = 150,
        v_low: float = -1.0,
        v_high: float = 1.0,
        seed: int | None = 0,
    ) -> None:
        self.embedding_dim = check_int("embedding_dim", embedding_dim)
        self.v_low = check_float("v_low", v_low)
        self.v_high = check_float("v_high", v_high)
        if not self.v_low < self.v_high:
            raise DigitalInputError(
                f"v_low must be < v_high, got v_low={v_low!r}, v_high={v_high!r}"
            )
        self.seed = check_seed(seed)
        self.history_: dict[str, list] = {}
        self._fitted = False

    # ---- params
    @classmethod
    def _param_names(cls) -> list[str]:
        """The constructor's parameters (its signature, with what ``**kwargs`` passes on)."""
        return [p.name for p in inspect.signature(cls).parameters.values()
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters, as a dict (sklearn style)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    @property
    def is_fitted(self) -> bool:
        return self._fitted

    def macs_per_image(self) -> int | None:
        """Multiply-accumulates the encoder spends on one image to produce its embedding
        (the classification head excluded: in the mixed-signal system the analog block
        classifies), or None when unknown (the default; plug-ins may override it)."""
        return None

    # ---- voltage mapping helpers
    @property
    def v_mid(self) -> float:
        return 0.5 * (self.v_low + self.v_high)

    @property
    def v_half(self) -> float:
        return 0.5 * (self.v_high - self.v_low)

    def _clip_volts(self, v: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(v, dtype=np.float64), self.v_low, self.v_high)

    def _require_fitted(self, what: str) -> None:
        if not self.embeds_before_fit and not self._fitted:
            raise RuntimeError(f"{type(self).__name__} must be fitted before {what}()")

    # ---- public API
    def fit(self, images: Any, labels: Any, *, epochs: int | None = None, batch_size: int | None = None,
            verbose: int = 1, validation_data: tuple[Any, Any] | None = None, **options: Any) -> "Encoder":
        """Train the encoder and its classification head on labelled images.

        Checks and prepares the inputs, then calls ``_fit`` (``options`` are passed on)."""
        x = prepare_images(images)
        y = validate_labels(labels, x.shape[0])
        if x.shape[0] == 0:
            raise DigitalInputError("fit needs at least one image")
        val = None
        if validation_data is not None:
            vx = prepare_images(validation_data[0], name="validation images")
            val = (vx, validate_labels(validation_data[1], vx.shape[0], name="validation labels"))
        return self._fit(x, y, epochs=None if epochs is None else check_int("epochs", epochs),
                         batch_size=None if batch_size is None else check_int("batch_size", batch_size),
                         verbose=verbose, validation_data=val, **options)

    def fit_targets(self, images: Any, target_embeddings: Any, labels: Any = None, *, epochs: int | None = None,
                    target_weight: float = 1.0, class_weight: float = 0.1, verbose: int = 1,
                    **options: Any) -> "Encoder":
        """Retrain (from the current weights) so that ``embed(images)`` ≈ targets (MSE in
        volts); with ``labels`` also keep the classification loss, weighted by
        ``class_weight``.  Targets are not clipped: targets outside ``[v_low, v_high]``
        cannot be reached and merely push the embedding to the nearer bound.

        Checks and prepares the inputs, then calls ``_fit_targets`` (``options`` passed on)."""
        x = prepare_images(images)
        if x.shape[0] == 0:
            raise DigitalInputError("fit_targets needs at least one image")
        t = validate_targets(target_embeddings, x.shape[0], self.embedding_dim)
        y = validate_labels(labels, x.shape[0]) if labels is not None else None
        return self._fit_targets(x, t, y, epochs=None if epochs is None else check_int("epochs", epochs),
                                 target_weight=check_float("target_weight", target_weight, low=0.0),
                                 class_weight=check_float("class_weight", class_weight, low=0.0),
                                 verbose=verbose, **options)

    # A subclass writes either the hooks below (given checked arrays) or its own public
    # ``fit`` / ``fit_targets`` (checking its own inputs); either one satisfies the contract.
    @abc.abstractmethod
    def _fit(self, x: np.ndarray, y: np.ndarray, **kw: Any) -> "Encoder":
        """``fit`` on prepared images ``x`` and int64 labels ``y``; keywords: ``epochs`` and
        ``batch_size`` (None: the encoder's own), ``verbose``, ``validation_data`` (prepared, or
        None) and any options given to ``fit``."""

    @abc.abstractmethod
    def _fit_targets(self, x: np.ndarray, t: np.ndarray, y: np.ndarray | None, **kw: Any) -> "Encoder":
        """``fit_targets`` on prepared images, float64 targets ``t`` (N, embedding_dim) and
        labels or None; keywords: ``epochs`` (None: the encoder's own), ``target_weight``,
        ``class_weight``, ``verbose`` and any options given to ``fit_targets``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.__signature__ = _constructor_signature(cls)
        for public, hook in (("fit", "_fit"), ("fit_targets", "_fit_targets")):
            if public in cls.__dict__ and getattr(getattr(cls, hook), "__isabstractmethod__", False):
                setattr(cls, hook, _replaced_by_public)

    @abc.abstractmethod
    def _embed(self, x: np.ndarray) -> np.ndarray:
        """Volts for prepared images ``x`` (float32, (N,28,28,1), [0,1])."""

    @abc.abstractmethod
    def _predict_classes(self, x: np.ndarray) -> np.ndarray:
        """Class indices for prepared images."""

    @abc.abstractmethod
    def _save_state(self, directory: Path) -> None: ...

    @abc.abstractmethod
    def _load_state(self, directory: Path) -> None: ...

    def embed(self, images: Any) -> np.ndarray:
        """Embeddings as float64 ``(N, embedding_dim)`` volts in ``[v_low, v_high]``."""
        x = prepare_images(images)
        self._require_fitted("embed")
        if x.shape[0] == 0:
            return np.empty((0, self.embedding_dim), dtype=np.float64)
        return self._clip_volts(self._embed(x))

    def predict_classes(self, images: Any) -> np.ndarray:
        """Predicted class indices (int64, (N,)) of the encoder's own head."""
        x = prepare_images(images)
        self._require_fitted("predict_classes")
        if x.shape[0] == 0:
            return np.empty((0,), dtype=np.int64)
        return np.asarray(self._predict_classes(x), dtype=np.int64)

    def evaluate(self, images: Any, labels: Any) -> float:
        """Digital-only accuracy of the encoder's classification head."""
        x = prepare_images(images)
        y = validate_labels(labels, x.shape[0])
        if y.size == 0:
            raise DigitalInputError("evaluate needs at least one image")
        return float(np.mean(self.predict_classes(x[..., 0]) == y))

    # ---- persistence
    def save(self, directory: str | Path) -> Path:
        """Write the encoder to ``directory`` (created if needed): a JSON manifest
        (class path + params) plus the encoder's own state files."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self._save_state(d)
        manifest = {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "class": class_path(type(self)),
            "params": _jsonable(self.get_params()),
            "fitted": bool(self._fitted),
            "history": _jsonable(self.history_),
        }
        (d / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        return d

    @classmethod
    def load(cls, directory: str | Path, *, modules: tuple[str, ...] = ()) -> "Encoder":
        """Load an encoder saved by :meth:`save`. Called on the base class it dispatches
        on the manifest (a registered class only: :func:`encoder_class`; ``modules`` are
        plug-in modules the caller trusts); on a subclass it also checks the class matches."""
        d = Path(directory)
        manifest = read_manifest(d)
        target = encoder_class(manifest["class"], modules=modules, where=f"{str(d / MANIFEST_NAME)!r}")
        if not (isinstance(target, type) and issubclass(target, cls)):
            raise EncoderContractError(
                f"{str(d)!r} holds a {manifest['class']!r}, not a {class_path(cls)}"
            )
        obj = target(**manifest["params"])
        obj._load_state(d)
        obj._fitted = bool(manifest.get("fitted", True))
        obj.history_ = {k: list(v) for k, v in manifest.get("history", {}).items()}
        return obj
