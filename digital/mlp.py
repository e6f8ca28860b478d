"""Fully connected encoder."""

from __future__ import annotations

from typing import Any

from .base import check_float, check_int_tuple
from .keras_base import KerasEncoder, keras


class MLPEncoder(KerasEncoder):
    """Flatten → [Dense(h, relu) → dropout for h in hidden] → Dense(embedding_dim,
    tanh|sigmoid) → volts, plus a Dense(10) head.  ``hidden`` may be empty.  Takes
    :class:`~digital.keras_base.KerasEncoder`'s parameters too (``epochs=10``,
    ``learning_rate=2e-3`` here)."""

    def __init__(
        self,
        embedding_dim: int = 150,
        v_low: float = -1.0,
        v_high: float = 1.0,
        *,
        hidden: tuple[int, ...] = (512, 256),
        dropout: float = 0.2,
        epochs: int = 10,
        learning_rate: float = 2e-3,
        **keras_params: Any,
    ) -> None:
        super().__init__(embedding_dim, v_low, v_high, epochs=epochs, learning_rate=learning_rate, **keras_params)
        self.hidden = check_int_tuple("hidden", hidden, allow_empty=True)
        self.dropout = check_float("dropout", dropout, low=0.0, high=1.0, high_inclusive=False)

    def _trunk(self, inputs: Any) -> Any:
        L = keras.layers
        x = L.Flatten()(inputs)
        for h in self.hidden:
            x = L.Dense(h, activation="relu")(x)
            if self.dropout > 0:
                x = L.Dropout(self.dropout)(x)
        return x
