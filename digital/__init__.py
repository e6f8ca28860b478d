"""Digital encoders: images → embeddings in volts for the analog block.

Knows nothing of circuits or experiment tracking.  Keras-based encoders are imported
lazily (``from digital import CNNEncoder`` imports Keras on first access).
"""

from __future__ import annotations

from typing import Any

from .base import (
    IMAGE_SHAPE,
    N_CLASSES,
    Encoder,
    EncoderContractError,
    prepare_images,
)
from .errors import DigitalInputError
from .registry import (
    available_encoders,
    check_encoder,
    load_encoder,
    make_encoder,
    register_encoder,
    register_encoder_class,
)
from .pca import PCAEncoder

__all__ = [
    "Encoder",
    "EncoderContractError",
    "DigitalInputError",
    "CNNEncoder",
    "MLPEncoder",
    "PCAEncoder",
    "KerasEncoder",
    "make_encoder",
    "load_encoder",
    "check_encoder",
    "register_encoder",
    "register_encoder_class",
    "available_encoders",
    "prepare_images",
    "N_CLASSES",
    "IMAGE_SHAPE",
]

_LAZY = {
    "CNNEncoder": ("digital.cnn", "CNNEncoder"),
    "MLPEncoder": ("digital.mlp", "MLPEncoder"),
    "KerasEncoder": ("digital.keras_base", "KerasEncoder"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'digital' has no attribute {name!r}")
