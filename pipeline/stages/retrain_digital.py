"""retrain-digital: retrain the encoder (from its current weights) to output the targets."""
from __future__ import annotations

import numpy as np

from pipeline.stages.artifacts import StageInputError, load_analog, load_targets
from pipeline.stages.common import analog_scores
from pipeline.stages.runner import Stage, StageContext


def body(ctx: StageContext) -> None:
    from digital import load_encoder
    d = ctx.cfg["digital"]
    ds = ctx.data
    tg = load_targets(ctx.input("targets"))
    if len(tg["targets"]) != len(ds.x_train) or not np.array_equal(tg["y_train"], ds.y_train):
        raise StageInputError(f"retrain-digital: the target embeddings ({len(tg['targets'])} rows) do not match the "
                              f"training set of this config ({len(ds.x_train)} images); use the same data settings")
    enc = load_encoder(ctx.input("encoder"))
    ctx.say(f"fitting {type(enc).__name__} to {len(ds.x_train)} target embeddings, {d['retrain_epochs']} epochs, "
            f"target weight {d['target_weight']}, class weight {d['class_weight']}")
    labels = ds.y_train if d["class_weight"] > 0 else None
    enc.fit_targets(ds.x_train, tg["targets"], labels, epochs=d["retrain_epochs"], target_weight=d["target_weight"],
                    class_weight=d["class_weight"], verbose=ctx.keras_verbose)
    from pipeline.build import check_fitted_encoder
    check_fitted_encoder(ctx.cfg, enc, ds.x_train, when="after retraining")
    hist = getattr(enc, "history_", {})
    ctx.log_history(hist, "retrain_")
    acc = enc.evaluate(ds.x_test, ds.y_test)
    ctx.log({"digital_test_accuracy": acc, "target_mse": (hist.get("target_mse") or [None])[-1]})
    ctx.log_parent({"round_digital_test_accuracy": acc}, step=ctx.round + 1)
    msg = f"digital-only test accuracy {acc:.4f}"
    if ctx.has("analog"):
        model = load_analog(ctx.input("analog"))
        try:
            s = analog_scores(model, enc.embed(ds.x_test), ds.y_test)
        finally:
            model.close()
        ctx.log({"end_to_end_test_accuracy": s["accuracy"]})
        ctx.log_parent({"round_retrained_end_to_end_test_accuracy": s["accuracy"]})
        msg += f"; end to end with the round's analog block {s['accuracy']:.4f}"
    ctx.say(msg)
    enc.save(ctx.output("encoder"))


STAGE = Stage(name="retrain-digital",
              help="retrain the encoder (from its current weights) to output the target embeddings",
              needs=("encoder", "targets"), optional=("analog",), produces=("encoder",), body=body)
