"""Helpers several stage bodies share: the analog block's data and scores."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pipeline.flow.artifacts import StageInputError, load_embeddings
from pipeline.flow.inputs import is_image_data, takes_pixels

if TYPE_CHECKING:
    from pipeline.config import RootConfig


def analog_scores(model, x, y, batch_size: int = 4096) -> dict:
    """The block's accuracy, loss, mean power and non-converged count on (x, y), by the
    analog model's one rule for non-converged samples (`AnalogModel.scores`)."""
    return model.scores(x, y, batch_size=batch_size)


def n_classes(data: dict) -> int:
    return int(data.get("n_classes", np.array(int(data["y_train"].max()) + 1)))


def pixel_volts(images: np.ndarray, v_low: float, v_high: float) -> np.ndarray:
    """Images (N, H, W) uint8 → (N, H·W) volts, 0 → v_low, 255 → v_high (digital.v_low/v_high; row-major
    pixels: an `analog.layers` first layer with input_shape [H, W, 1] sees the image)."""
    x = np.asarray(images, dtype=np.float64).reshape(len(images), -1) / 255.0
    return v_low + (v_high - v_low) * x


def analog_data(ctx) -> dict:
    """x_/y_ train, val, test for the analog block: embeddings, images as pixel volts
    (digital.encoder: none), or tabular data as volts."""
    if ctx.has("embeddings"):
        return load_embeddings(ctx.input("embeddings"))
    ds = ctx.data
    if ds.x_train.ndim > 2 and takes_pixels(ctx.cfg):
        box = ctx.cfg.digital.v_low, ctx.cfg.digital.v_high
        return {"x_train": pixel_volts(ds.x_train, *box), "y_train": ds.y_train,
                "x_val": pixel_volts(ds.x_val, *box), "y_val": ds.y_val,
                "x_test": pixel_volts(ds.x_test, *box), "y_test": ds.y_test, "n_classes": np.array(ds.n_classes)}
    if ds.x_train.ndim > 2:
        raise StageInputError(f"{ctx.stage}: {ds.name} images need embeddings; pass --from-run of an embed run")
    from pipeline.data import tabular_to_volts
    xtr, xva, xte = tabular_to_volts(ds.x_train, ds.x_val, ds.x_test, amplitude=ctx.cfg.analog.input_amplitude)
    return {"x_train": xtr, "y_train": ds.y_train, "x_val": xva, "y_val": ds.y_val, "x_test": xte, "y_test": ds.y_test,
            "n_classes": np.array(ds.n_classes)}


def input_box(cfg: RootConfig, emb: dict | None) -> tuple[float, float]:
    """Voltage range inputs may take: the encoder's [v_low, v_high] within ±input_amplitude."""
    amp = float(cfg.analog.input_amplitude)
    if emb is not None and "v_low" in emb:
        lo, hi = float(emb["v_low"]), float(emb["v_high"])
    elif is_image_data(cfg):
        lo, hi = cfg.digital.v_low, cfg.digital.v_high
    else:
        lo, hi = -amp, amp
    return max(lo, -amp), min(hi, amp)
