"""embed: the train/val/test images through the encoder → embeddings.npz (volts); with
`digital.encoder: none`, the images' pixels as volts (the analog block is the front end)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import time

import numpy as np

from pipeline.flow.artifacts import save_npz
from pipeline.flow.inputs import has_encoder, is_image_data
from pipeline.flow.runner import Stage, StageContext

if TYPE_CHECKING:
    from pipeline.config import RootConfig

CHUNK = 8192   # a multiple of the Keras encoders' batch: fewer retraces


def required(cfg: RootConfig) -> tuple:
    """The encoder, unless digital.encoder is none (then the pixels are the embeddings)."""
    return ("encoder",) if has_encoder(cfg) or not is_image_data(cfg) else ()


class _Pixels:
    """Stands in for an encoder when digital.encoder is none: pixels → volts."""

    def __init__(self, cfg: RootConfig, shape):
        self.cfg, self.embedding_dim = cfg, int(np.prod(shape))
        self.v_low, self.v_high = cfg.digital.v_low, cfg.digital.v_high

    def embed(self, images):
        from pipeline.flow.stage_data import pixel_volts
        return pixel_volts(images, self.v_low, self.v_high)


def body(ctx: StageContext) -> None:
    from analog.progress import progress

    ds = ctx.data
    if ctx.has("encoder"):
        from digital import check_encoder
        from pipeline.system.build import load_encoder
        enc = load_encoder(ctx.cfg, ctx.input("encoder"))
        check_encoder(enc, ds.x_val[:32])
    else:
        enc = _Pixels(ctx.cfg, ds.x_train.shape[1:])
        ctx.say(f"digital.encoder: none: {enc.embedding_dim} pixels as volts in [{enc.v_low}, {enc.v_high}]")
    t0 = time.perf_counter()
    arrays = {}
    parts = (("train", ds.x_train, ds.y_train), ("val", ds.x_val, ds.y_val), ("test", ds.x_test, ds.y_test))
    with progress(sum(len(p[1]) for p in parts), "embed", "image", enabled=bool(ctx.verbose)) as bar:
        for split, x, y in parts:
            chunks = []
            for lo in range(0, len(x), CHUNK):
                chunks.append(enc.embed(x[lo: lo + CHUNK]))
                bar.update(len(chunks[-1]))
            # float32 on disk (µV resolution; halves the artifact), float64 in memory
            arrays[f"x_{split}"] = (np.concatenate(chunks) if chunks else np.zeros((0, enc.embedding_dim))
                                    ).astype(np.float32)
            arrays[f"y_{split}"] = np.asarray(y, dtype=np.int64)
    seconds = time.perf_counter() - t0
    e = arrays["x_train"]
    span = enc.v_high - enc.v_low
    saturated = float(np.mean((e <= enc.v_low + 0.01 * span) | (e >= enc.v_high - 0.01 * span)))
    save_npz(ctx.output("embeddings"), "embeddings.npz", **arrays, v_low=np.array(enc.v_low),
             v_high=np.array(enc.v_high), n_classes=np.array(ds.n_classes))
    ctx.log({"embed_seconds": seconds, "embedding_mean": float(e.mean()), "embedding_std": float(e.std()),
             "embedding_saturated_fraction": saturated, "embedding_width": e.shape[1]})
    ctx.say(f"{sum(len(a) for k, a in arrays.items() if k.startswith('x_'))} embeddings in {seconds:.1f} s")


STAGE = Stage(name="embed", help="embed train/val/test images with an encoder, or as pixel volts with "
                               "digital.encoder: none (input: encoder; output: embeddings)",
              optional=("encoder",), inputs=required, produces=("embeddings",), new_round_after=("retrain-digital",),
              body=body)
