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
constructor only stores and validates its arguments), clipping to the voltage range,
``evaluate``, ``get_params``, ``save`` and ``load``.  Input checks live in
:mod:`digital.inputs`, the on-disk manifest and the class registry in
:mod:`digital.manifest`; the names below are re-exported here, the contract's namespace.
"""

from __future__ import annotations

import abc
import inspect
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DigitalInputError, EncoderContractError, MissingEncoderError  # noqa: F401 (re-exported)
from .inputs import IMAGE_SHAPE, N_CLASSES, prepare_images, validate_labels, validate_targets
from .manifest import (MANIFEST_NAME, class_path, encoder_class, import_object, read_manifest,  # noqa: F401
                       register_encoder_class, write_manifest)
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
        write_manifest(d, type(self), self.get_params(), self._fitted, self.history_)
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
