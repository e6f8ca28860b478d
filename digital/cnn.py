"""Convolutional encoder (the default)."""

from __future__ import annotations

from typing import Any

from .base import check_float, check_int, check_int_tuple
from .keras_base import KerasEncoder, keras


class CNNEncoder(KerasEncoder):
    """Small conv net → bounded embedding (volts) → Dense(10) head.

    Trunk (defaults ``filters=(32, 64, 64)``)::

        conv3x3(f0)-BN-ReLU → maxpool2            (28→14)
        [conv3x3(f)-BN-ReLU for f in filters[1:]] → maxpool2   (14→7)
        dropout → flatten → Dense(embedding_dim, tanh) → volts

    Parameters beyond :class:`~digital.keras_base.KerasEncoder`'s:
    ``filters`` (tuple of ≥ 2 ints), ``dropout`` (before the embedding layer).
    """

    def __init__(
        self,
        embedding_dim: int = 150,
        v_low: float = -1.0,
        v_high: float = 1.0,
        *,
        filters: tuple[int, ...] = (32, 64, 64),
        dropout: float = 0.25,
        activation: str = "tanh",
        epochs: int = 5,
        batch_size: int = 128,
        learning_rate: float = 3e-3,
        target_epochs: int = 3,
        target_learning_rate: float = 1e-3,
        embed_batch_size: int = 1024,
        seed: int | None = 0,
    ) -> None:
        super().__init__(
            embedding_dim, v_low, v_high, activation=activation, epochs=epochs,
            batch_size=batch_size, learning_rate=learning_rate, target_epochs=target_epochs,
            target_learning_rate=target_learning_rate, embed_batch_size=embed_batch_size, seed=seed,
        )
        self.filters = check_int_tuple("filters", filters)
        if len(self.filters) < 2:
            raise ValueError(f"filters must have at least 2 entries (one per pooling stage), got {filters!r}")
        self.dropout = check_float("dropout", dropout, low=0.0, high=1.0, high_inclusive=False)

    def _trunk(self, inputs: Any) -> Any:
        L = keras.layers

        def conv_bn_relu(x: Any, f: int) -> Any:
            x = L.Conv2D(f, 3, padding="same", use_bias=False)(x)
            x = L.BatchNormalization()(x)
            return L.ReLU()(x)

        x = conv_bn_relu(inputs, self.filters[0])
        x = L.MaxPooling2D()(x)
        for f in self.filters[1:]:
            x = conv_bn_relu(x, f)
        x = L.MaxPooling2D()(x)
        if self.dropout > 0:
            x = L.Dropout(self.dropout)(x)
        return L.Flatten()(x)
