"""embed: the train/val/test images through the encoder → embeddings.npz (volts); with
`digital.encoder: none`, the images' pixels as volts (the analog block is the front end)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import time

import numpy as np

from pipeline.flow.embedding_reuse import embedding_arrays, matching, read_embeddings, save_embeddings
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
    stored = None
    if ctx.has("encoder") and ctx.has("embeddings"):   # retrain-digital's, in a co-training
        stored = matching(read_embeddings(ctx.input("embeddings")), enc, ds)
    if stored is not None:
        ctx.say("the embeddings input holds this encoder's embeddings of this data: handed on")
        arrays = stored
    else:
        total = len(ds.x_train) + len(ds.x_val) + len(ds.x_test)
        with progress(total, "embed", "image", enabled=bool(ctx.verbose)) as bar:
            arrays = embedding_arrays(enc, ds, CHUNK, bar)
    seconds = time.perf_counter() - t0
    e = arrays["x_train"]
    span = enc.v_high - enc.v_low
    saturated = float(np.mean((e <= enc.v_low + 0.01 * span) | (e >= enc.v_high - 0.01 * span)))
    save_embeddings(ctx.output("embeddings"), arrays, ctx.input("embeddings") if stored is not None else None)
    ctx.log({"embed_seconds": seconds, "embed_reused": float(stored is not None), "embedding_mean": float(e.mean()),
             "embedding_std": float(e.std()), "embedding_saturated_fraction": saturated, "embedding_width": e.shape[1]})
    ctx.say(f"{sum(len(a) for k, a in arrays.items() if k.startswith('x_'))} embeddings in {seconds:.1f} s")


STAGE = Stage(name="embed", help="embed train/val/test images with an encoder, or as pixel volts with "
                               "digital.encoder: none (input: encoder; output: embeddings; retrain-digital's embeddings "
                               "from the same encoder are handed on)",
              optional=("encoder", "embeddings"), inputs=required, produces=("embeddings",), new_round_after=("retrain-digital",),
              body=body)
