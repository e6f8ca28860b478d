"""PCA encoder: a linear, closed-form baseline (scikit-learn)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import (
    Encoder,
    check_float,
    check_int,
)

STATE_FILE = "pca_state.npz"


class PCAEncoder(Encoder):
    """PCA → standardise → scale to volts (clipped).

    ``fit``: PCA with ``embedding_dim`` components on the flattened [0,1] images; each
    component is standardised and ``±clip_sigma`` standard deviations map to
    ``[v_low, v_high]`` (values beyond are clipped).  The classification head is a
    multinomial LogisticRegression on the volts.

    ``fit_targets``: fits a Ridge map (``ridge_alpha``) from the flattened image to the
    target volts; from then on ``embed`` uses that map (clipped to range).  With labels
    (and ``class_weight > 0``) the head is refitted on the new embeddings, otherwise it
    is kept.  ``epochs`` and ``target_weight`` have no effect (closed-form fit).

    The whole embedding is one affine map ``x @ W + b`` followed by clipping, stored as
    arrays (no pickles), so save/load is exact.  Cannot embed before ``fit``
    (``embeds_before_fit = False``).
    """

    embeds_before_fit = False

    def __init__(
        self,
        embedding_dim: int = 150,
        v_low: float = -1.0,
        v_high: float = 1.0,
        *,
        clip_sigma: float = 3.0,
        C: float = 1.0,
        max_iter: int = 300,
        ridge_alpha: float = 1.0,
        seed: int | None = 0,
    ) -> None:
        super().__init__(embedding_dim=embedding_dim, v_low=v_low, v_high=v_high, seed=seed)
        if self.embedding_dim > 784:
            raise ValueError(f"embedding_dim must be <= 784 for PCAEncoder, got {embedding_dim!r}")
        self.clip_sigma = check_float("clip_sigma", clip_sigma, low=0.0, low_inclusive=False)
        self.C = check_float("C", C, low=0.0, low_inclusive=False)
        self.max_iter = check_int("max_iter", max_iter)
        self.ridge_alpha = check_float("ridge_alpha", ridge_alpha, low=0.0)
        self.W_: np.ndarray | None = None
        self.b_: np.ndarray | None = None
        self.head_coef_: np.ndarray | None = None
        self.head_intercept_: np.ndarray | None = None
        self.classes_: np.ndarray | None = None

    def macs_per_image(self) -> int:
        """784 × embedding_dim: the embedding is one affine map of the flattened image
        (the bias adds, the clipping and the logistic head are not counted)."""
        return 28 * 28 * self.embedding_dim

    @staticmethod
    def _flat(x: np.ndarray) -> np.ndarray:
        return x.reshape(x.shape[0], -1).astype(np.float64)

    def _embed(self, x: np.ndarray) -> np.ndarray:
        return self._flat(x) @ self.W_ + self.b_

    def _predict_classes(self, x: np.ndarray) -> np.ndarray:
        v = self._clip_volts(self._embed(x))
        scores = v @ self.head_coef_.T + self.head_intercept_
        if scores.shape[1] == 1:  # binary LogisticRegression
            return self.classes_[(scores[:, 0] > 0).astype(int)]
        return self.classes_[np.argmax(scores, axis=1)]

    def _fit_head(self, v: np.ndarray, y: np.ndarray) -> None:
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.seed)
        clf.fit(v, y)
        self.head_coef_ = clf.coef_.astype(np.float64)
        self.head_intercept_ = clf.intercept_.astype(np.float64)
        self.classes_ = clf.classes_.astype(np.int64)

    def _fit(self, x, y, *, epochs=None, batch_size=None, verbose=1, validation_data=None) -> "PCAEncoder":
        from sklearn.decomposition import PCA

        if x.shape[0] < self.embedding_dim:
            raise ValueError(
                f"PCAEncoder.fit needs at least embedding_dim={self.embedding_dim} images, "
                f"got {x.shape[0]}"
            )
        if len(np.unique(y)) < 2:
            raise ValueError("labels must contain at least 2 classes")
        X = self._flat(x)
        pca = PCA(n_components=self.embedding_dim, random_state=self.seed,
                  svd_solver="randomized" if X.shape[0] > 2000 else "full")
        Z = pca.fit_transform(X)
        std = Z.std(axis=0)
        std[std < 1e-12] = 1.0
        # volts = v_mid + v_half * ((x - mean) @ comp.T) / (std * clip_sigma)
        k = self.v_half / (std * self.clip_sigma)
        self.W_ = pca.components_.T * k[None, :]
        self.b_ = self.v_mid - (pca.mean_ @ pca.components_.T) * k - Z.mean(axis=0) * k
        v = self._clip_volts(self._embed(x))
        self._fit_head(v, y)
        self._fitted = True
        acc = float(np.mean(self._predict_classes(x) == y))
        self.history_ = {"accuracy": [acc], "explained_variance": [float(pca.explained_variance_ratio_.sum())]}
        if validation_data is not None:
            self.history_["val_accuracy"] = [self.evaluate(*validation_data)]
        if verbose:
            print(f"PCAEncoder: {self.embedding_dim} components explain "
                  f"{self.history_['explained_variance'][0]:.3f} of the variance; train acc {acc:.4f}")
        return self

    def _fit_targets(self, x, t, y, *, epochs=None, target_weight=1.0, class_weight=0.1,
                     verbose=1) -> "PCAEncoder":
        from sklearn.linear_model import Ridge

        ridge = Ridge(alpha=self.ridge_alpha)
        ridge.fit(self._flat(x), t)
        self.W_ = np.ascontiguousarray(ridge.coef_.T, dtype=np.float64)
        self.b_ = np.asarray(ridge.intercept_, dtype=np.float64).reshape(self.embedding_dim)
        v = self._clip_volts(self._embed(x))
        if y is not None and class_weight > 0 and len(np.unique(y)) >= 2:
            self._fit_head(v, y)
        elif self.head_coef_ is None:
            raise ValueError("an unfitted PCAEncoder needs labels in fit_targets to build its head")
        self._fitted = True
        self.history_ = {"target_mse": [float(np.mean((v - t) ** 2))]}
        if verbose:
            print(f"PCAEncoder.fit_targets: target MSE {self.history_['target_mse'][0]:.5f} V^2")
        return self

    def _save_state(self, directory: Path) -> None:
        if not self._fitted:
            return
        np.savez(directory / STATE_FILE, W=self.W_, b=self.b_, head_coef=self.head_coef_,
                 head_intercept=self.head_intercept_, classes=self.classes_)

    def _load_state(self, directory: Path) -> None:
        path = directory / STATE_FILE
        if not path.is_file():
            return  # saved unfitted
        with np.load(path) as z:
            self.W_, self.b_ = z["W"], z["b"]
            self.head_coef_, self.head_intercept_ = z["head_coef"], z["head_intercept"]
            self.classes_ = z["classes"]
