"""embed: the train/val/test images through the encoder → embeddings.npz (volts)."""
from __future__ import annotations

import time

import numpy as np

from pipeline.stages.artifacts import save_npz
from pipeline.stages.runner import Stage, StageContext

CHUNK = 8192   # a multiple of the Keras encoders' batch: fewer retraces


def body(ctx: StageContext) -> None:
    from tqdm.auto import tqdm

    from digital import check_encoder, load_encoder
    ds = ctx.data
    enc = load_encoder(ctx.input("encoder"))
    check_encoder(enc, ds.x_val[:32])
    t0 = time.perf_counter()
    arrays = {}
    parts = (("train", ds.x_train, ds.y_train), ("val", ds.x_val, ds.y_val), ("test", ds.x_test, ds.y_test))
    with tqdm(total=sum(len(p[1]) for p in parts), desc="embed", unit="image", disable=not ctx.verbose,
              dynamic_ncols=True) as bar:
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


STAGE = Stage(name="embed", help="embed train/val/test images with an encoder (input: encoder; output: embeddings)",
              needs=("encoder",), produces=("embeddings",), new_round_after=("retrain-digital",), body=body)
