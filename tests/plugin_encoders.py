"""Plug-in encoder factories for the tests (`digital.encoder: "tests.plugin_encoders:..."`)."""
from __future__ import annotations

from digital import PCAEncoder


class _OutOfRange(PCAEncoder):
    """Breaks the contract: embeddings 10× outside [v_low, v_high]."""

    def embed(self, images):
        return 10.0 * super().embed(images) + 5.0


def out_of_range(embedding_dim: int = 150, v_low: float = -1.0, v_high: float = 1.0, seed: int = 0):
    return _OutOfRange(embedding_dim=embedding_dim, v_low=v_low, v_high=v_high, seed=seed)


def broken(embedding_dim: int = 150, v_low: float = -1.0, v_high: float = 1.0, seed: int = 0):
    """A factory with a bug of its own (not a contract violation)."""
    raise RuntimeError("the plug-in's own bug")
