"""Shared machinery of the Keras encoders (CNN, MLP).

Every Keras encoder is one functional model with two outputs:

    images ─► trunk ─► Dense(embedding_dim, tanh|sigmoid) "embedding" ─┬─► Rescaling "volts"
                                                                      └─► Dense(10) "logits"

The ``volts`` layer is the affine map from the bounded activation to
``[v_low, v_high]``; its scale/offset are fixed at build time from the parameters and
saved with the model.  The classification head reads the bounded activation (not the
volts), so it is independent of the voltage range.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import abc
import contextlib
from pathlib import Path
from typing import Annotated, Any, Iterator

import numpy as np
import keras
from annotated_types import Ge, Le

from .base import (
    N_CLASSES,
    Encoder,
    check_choice,
    check_float,
    check_int,
    check_param,
    prepare_images,
    validate_labels,
)
from .augment import MAX_SHIFT, augment_images
from .macs import keras_macs

MODEL_FILE = "model.keras"
ACTIVATIONS = ("tanh", "sigmoid")


class KerasEncoder(Encoder):
    """Base of the Keras encoders; subclasses implement :meth:`_trunk`.

    Data augmentation (off by default) applies to ``fit`` only, the training on labels:
    ``augment_shift`` = s > 0 translates every training image of every epoch by (dy, dx)
    drawn uniformly from {-s..s}² pixels (the vacated pixels are 0, the background), and
    ``augment_flip`` mirrors it left-right with probability 1/2 (Fashion-MNIST's classes
    are mirror-symmetric); see :func:`augment_images`.  Retraining to target embeddings and
    through the analog block never augments: their targets and gradients belong to the
    images as they are.
    """

    def __init__(
        self,
        embedding_dim: int = 150,
        v_low: float = -1.0,
        v_high: float = 1.0,
        *,
        activation: str = "tanh",
        epochs: int = 5,
        batch_size: int = 128,
        learning_rate: float = 3e-3,
        target_epochs: int = 3,
        target_learning_rate: float = 1e-3,
        embed_batch_size: int = 1024,
        augment_shift: int = 0,
        augment_flip: bool = False,
        seed: int | None = 0,
    ) -> None:
        super().__init__(embedding_dim=embedding_dim, v_low=v_low, v_high=v_high, seed=seed)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.epochs = check_int("epochs", epochs)
        self.batch_size = check_int("batch_size", batch_size)
        self.learning_rate = check_float("learning_rate", learning_rate, low=0.0, low_inclusive=False)
        self.target_epochs = check_int("target_epochs", target_epochs)
        self.target_learning_rate = check_float(
            "target_learning_rate", target_learning_rate, low=0.0, low_inclusive=False
        )
        self.embed_batch_size = check_int("embed_batch_size", embed_batch_size)
        self.augment_shift = check_param("augment_shift", augment_shift, Annotated[int, Ge(0), Le(MAX_SHIFT)],
                                         f"an integer from 0 to {MAX_SHIFT} (pixels)")
        self.augment_flip = check_param("augment_flip", augment_flip, bool, "true or false")
        self.model_: keras.Model | None = None

    # ------------------------------------------------------------------ building
    @abc.abstractmethod
    def _trunk(self, inputs: Any) -> Any:
        """Feature extractor: Keras tensor (N,28,28,1) → flat features."""

    def _volts_affine(self) -> tuple[float, float]:
        """(scale, offset) with volts = scale * activation + offset."""
        if self.activation == "tanh":  # a in [-1, 1]
            return self.v_half, self.v_mid
        return self.v_high - self.v_low, self.v_low  # sigmoid: a in [0, 1]

    def _seed_everything(self) -> None:
        if self.seed is not None:
            keras.utils.set_random_seed(self.seed)

    def _build(self) -> keras.Model:
        self._seed_everything()
        inputs = keras.Input(shape=(28, 28, 1), name="image")
        feats = self._trunk(inputs)
        act = keras.layers.Dense(self.embedding_dim, activation=self.activation, name="embedding")(feats)
        scale, offset = self._volts_affine()
        volts = keras.layers.Rescaling(scale=scale, offset=offset, name="volts")(act)
        logits = keras.layers.Dense(N_CLASSES, name="logits")(act)
        return keras.Model(inputs, [volts, logits], name=type(self).__name__)

    @property
    def model(self) -> keras.Model:
        """The Keras model (built on first use); outputs ``[volts, logits]``."""
        if self.model_ is None:
            self.model_ = self._build()
            self._make_views()
        return self.model_

    def _make_views(self) -> None:
        m = self.model_
        self._embed_model = keras.Model(m.inputs, m.outputs[0])
        self._clf_model = keras.Model(m.inputs, m.outputs[1])

    # --------------------------------------------------------------- training
    def _schedule(self, lr: float, steps: int) -> Any:
        warmup = min(200, max(1, steps // 10))
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=lr * 0.1,
            decay_steps=max(1, steps - warmup),
            warmup_target=lr,
            warmup_steps=warmup,
            alpha=0.01,
        )

    def _fit(self, x, y, *, epochs=None, batch_size=None, verbose=1, validation_data=None,
             callbacks: list[Any] | None = None) -> "KerasEncoder":
        epochs = self.epochs if epochs is None else epochs
        batch_size = self.batch_size if batch_size is None else batch_size
        self.model  # build if needed
        self._seed_everything()
        steps = epochs * int(np.ceil(x.shape[0] / batch_size))
        self._clf_model.compile(
            optimizer=keras.optimizers.Adam(self._schedule(self.learning_rate, steps)),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        if self.augment_shift or self.augment_flip:
            self.history_ = self._fit_augmented(x, y, epochs, batch_size, verbose, validation_data, callbacks)
        else:
            hist = self._clf_model.fit(
                x, y, batch_size=batch_size, epochs=epochs, shuffle=True,
                verbose=verbose, validation_data=validation_data, callbacks=callbacks,
            )
            self.history_ = {k: [float(v) for v in vs] for k, vs in hist.history.items()}
        self._fitted = True
        return self

    def _fit_augmented(self, x, y, epochs, batch_size, verbose, validation_data, callbacks) -> dict:
        """``fit`` with augmentation: each epoch sees every training image once, in a fresh
        order, as a new random translation / mirror image (:func:`augment_images`), both drawn
        from a generator seeded by (seed, epoch) so that a run is repeatable (seed None: fresh
        entropy).  One Keras ``fit`` call per epoch (the optimiser and its learning-rate
        schedule carry on from one to the next), so ``callbacks`` see one training per epoch."""
        history: dict[str, list] = {}
        for epoch in range(epochs):
            rng = np.random.default_rng(None if self.seed is None else [self.seed, epoch])
            perm = rng.permutation(x.shape[0])
            xa = np.concatenate([augment_images(x[perm[lo:lo + 4096]], rng, self.augment_shift, self.augment_flip)
                                 for lo in range(0, x.shape[0], 4096)])
            hist = self._clf_model.fit(
                xa, y[perm], batch_size=batch_size, epochs=epoch + 1, initial_epoch=epoch, shuffle=False,
                verbose=verbose, validation_data=validation_data, callbacks=callbacks,
            )
            for k, vs in hist.history.items():
                history.setdefault(k, []).extend(float(v) for v in vs)
        return history

    def _fit_targets(self, x, t, y, *, epochs=None, target_weight=1.0, class_weight=0.1, verbose=1,
                     batch_size: int | None = None) -> "KerasEncoder":
        epochs = self.target_epochs if epochs is None else epochs
        batch_size = self.batch_size if batch_size is None else check_int("batch_size", batch_size)
        self.model  # build if needed
        self._seed_everything()
        with self._finetune_mode():
            return self._train_to_targets(x, t.astype(np.float32), y, epochs, batch_size, target_weight,
                                          class_weight, verbose)

    @contextlib.contextmanager
    def _finetune_mode(self) -> Iterator[None]:
        """Target fitting regresses exact voltages, so it runs the net as it runs at
        inference: BatchNormalization frozen (moving statistics, no updates) and dropout
        off.  Restored afterwards."""
        saved: list[tuple[Any, str, Any]] = []
        for layer in self.model_.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                saved.append((layer, "trainable", layer.trainable))
                layer.trainable = False
            elif isinstance(layer, keras.layers.Dropout):
                saved.append((layer, "rate", layer.rate))
                layer.rate = 0.0
        try:
            yield
        finally:
            for layer, attr, value in saved:
                setattr(layer, attr, value)

    def _train_to_targets(self, x, t, y, epochs, batch_size, target_weight, class_weight, verbose):
        steps = epochs * int(np.ceil(x.shape[0] / batch_size))
        opt = keras.optimizers.Adam(self._schedule(self.target_learning_rate, steps))
        mse = keras.losses.MeanSquaredError()
        if y is not None and class_weight > 0:
            model = self.model_
            model.compile(
                optimizer=opt,
                loss=[mse, keras.losses.SparseCategoricalCrossentropy(from_logits=True)],
                loss_weights=[target_weight, class_weight],
                metrics=[[keras.metrics.MeanSquaredError(name="target_mse")], ["accuracy"]],
            )
            hist = model.fit(x, [t, y], batch_size=batch_size, epochs=epochs, shuffle=True, verbose=verbose)
        else:
            model = self._embed_model
            model.compile(
                optimizer=opt,
                loss=mse,
                loss_weights=[target_weight] if target_weight != 1.0 else None,
                metrics=[keras.metrics.MeanSquaredError(name="target_mse")],
            )
            hist = model.fit(x, t, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=verbose)
        self.history_ = {
            _clean_key(k): [float(v) for v in vs] for k, vs in hist.history.items()
        }
        self._fitted = True
        return self

    # ------------------------------------------------- training by output gradients
    def embedding_weight_gradients(self, images: Any, out_grads: Any) -> list[np.ndarray]:
        """(1/B) Σ_b (∂volts_b/∂θ)ᵀ g_b for every trainable weight θ, in
        ``model.trainable_weights`` order: the weight gradient of a loss whose gradient
        with respect to the embedding (volts) of image b is ``out_grads[b]`` (B, embedding_dim).
        Rows that are not finite count as 0 and are left out of B.  Runs the net as at
        inference (BatchNormalization statistics fixed, dropout off)."""
        x = prepare_images(images)
        g = np.asarray(out_grads, dtype=np.float64)
        if g.shape != (x.shape[0], self.embedding_dim):
            raise ValueError(f"out_grads of shape {g.shape}, expected ({x.shape[0]}, {self.embedding_dim})")
        self.model
        with self._finetune_mode(), _quiet_input_structure():
            grads, _, _ = self._through_step_grads(x, g, None, 0.0)
        return [np.zeros(tuple(w.shape)) if v is None else np.asarray(v, dtype=np.float64)
                for v, w in zip(grads, self.model_.trainable_weights)]

    def _through_step_grads(self, x, g, y, class_weight):
        import tensorflow as tf
        ok = np.all(np.isfinite(g), axis=1)
        g = np.where(ok[:, None], g, 0.0).astype(np.float32)
        n_ok = max(1, int(ok.sum()))
        model = self.model_
        ce = tf.constant(0.0)
        with tf.GradientTape() as tape:
            volts, logits = model(x, training=False)
            # surrogate whose weight gradient is (1/B) Σ_b J_bᵀ g_b: volts already include the
            # Rescaling a → scale·a + offset, so the chain through the voltage map is exact
            loss = tf.reduce_sum(volts * tf.constant(g)) / n_ok
            if y is not None and class_weight > 0:
                ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits)
                loss = loss + class_weight * ce
        return tape.gradient(loss, model.trainable_weights), ok, float(ce)

    def fit_through(self, images: Any, labels: Any, grad_fn: Any, *, epochs: int = 1,
                    batch_size: int | None = None, learning_rate: float | None = None,
                    class_weight: float = 0.0, seed: int | None = None, verbose: int = 1) -> "KerasEncoder":
        """Retrain (from the current weights) by backpropagating a downstream loss given only
        through its gradient: for each mini-batch of image indices ``idx``, the embedding
        ``e`` (volts) is computed, ``grad_fn(e, idx)`` returns ∂L/∂e (numpy, (B,
        embedding_dim); non-finite rows are skipped) and Adam steps the weights along
        (1/B) Σ_b J_bᵀ ∂L/∂e_b (+ ``class_weight`` × the classification head's loss on
        ``labels``).  history_: ``through_class_loss`` (mean classification loss) and ``through_skipped``
        per epoch."""
        x = prepare_images(images)
        n = x.shape[0]
        if n == 0:
            raise ValueError("fit_through needs at least one image")
        if not callable(grad_fn):
            raise TypeError(f"grad_fn must be callable(embeddings, idx) -> dL/dembedding, got {type(grad_fn).__name__}")
        y = validate_labels(labels, n) if labels is not None else None
        epochs = check_int("epochs", epochs)
        bs = self.batch_size if batch_size is None else check_int("batch_size", batch_size)
        lr = self.target_learning_rate if learning_rate is None else check_float(
            "learning_rate", learning_rate, low=0.0, low_inclusive=False)
        class_weight = check_float("class_weight", class_weight, low=0.0)
        self.model
        self._seed_everything()
        rng = np.random.default_rng(self.seed if seed is None else seed)
        opt = keras.optimizers.Adam(lr)
        hist: dict[str, list] = {"through_class_loss": [], "through_skipped": []}
        with self._finetune_mode(), _quiet_input_structure():
            for _ in range(epochs):
                perm = rng.permutation(n)
                skipped, ce_sum = 0, 0.0
                for lo in range(0, n, bs):
                    idx = perm[lo:lo + bs]
                    xb = x[idx]
                    e = np.asarray(self._embed_model(xb, training=False), dtype=np.float64)
                    g = np.asarray(grad_fn(e, idx), dtype=np.float64)
                    if g.shape != e.shape:
                        raise ValueError(f"grad_fn returned shape {g.shape}, expected {e.shape}")
                    yb = None if y is None else y[idx]
                    grads, ok, ce = self._through_step_grads(xb, g, yb, class_weight)
                    skipped += int((~ok).sum())
                    ce_sum += ce * len(idx)
                    opt.apply_gradients([(gw, w) for gw, w in zip(grads, self.model_.trainable_weights)
                                         if gw is not None])
                hist["through_class_loss"].append(ce_sum / n)
                hist["through_skipped"].append(skipped)
                if verbose:
                    print(f"fit_through: epoch {len(hist['through_skipped'])}/{epochs}, "
                          f"class loss {ce_sum / n:.4f}, skipped {skipped}")
        self.history_ = hist
        self._fitted = True
        return self

    # --------------------------------------------------------------- inference
    def _batched(self, sub_model: keras.Model, x: np.ndarray) -> np.ndarray:
        bs = self.embed_batch_size
        out = [np.asarray(sub_model.predict_on_batch(x[i:i + bs])) for i in range(0, x.shape[0], bs)]
        return np.concatenate(out, axis=0)

    def macs_per_image(self) -> int:
        """Multiply-accumulates per image from the image to the embedding (the layers of
        the ``volts`` output; the Dense(10) head is excluded): see :func:`keras_macs`."""
        self.model  # build if needed
        return keras_macs(self._embed_model)

    def _embed(self, x: np.ndarray) -> np.ndarray:
        self.model
        return self._batched(self._embed_model, x).astype(np.float64)

    def _predict_classes(self, x: np.ndarray) -> np.ndarray:
        self.model
        return np.argmax(self._batched(self._clf_model, x), axis=1)

    def predict_logits(self, images: Any) -> np.ndarray:
        """Raw class scores (N, 10) of the classification head."""
        self.model
        return self._batched(self._clf_model, prepare_images(images)).astype(np.float64)

    # --------------------------------------------------------------- persistence
    def _save_state(self, directory: Path) -> None:
        self.model.save(directory / MODEL_FILE)

    def _load_state(self, directory: Path) -> None:
        self.model_ = keras.saving.load_model(directory / MODEL_FILE, compile=False)
        self._make_views()


@contextlib.contextmanager
def _quiet_input_structure() -> Iterator[None]:
    """Calling the functional model on a bare tensor is right; Keras still warns that the
    inputs' structure ('image') differs. Silenced while training by output gradients."""
    import warnings
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The structure of `inputs`")
        yield


def _clean_key(key: str) -> str:
    for old, new in (("volts_target_mse", "target_mse"), ("volts_loss", "target_loss"),
                     ("logits_accuracy", "accuracy"), ("logits_loss", "class_loss")):
        if key == old:
            return new
    return key
