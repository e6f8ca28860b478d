"""retrain-digital: retrain the encoder (from its current weights), by digital.retrain_method:
`targets` regresses its embeddings onto the optimised inputs, `through-analog` backpropagates
the analog block's EP input gradient into it (pipeline.system.through_analog), `both` does one then
the other; outputs the retrained encoder's embeddings too (the next embed stage hands them on).
Logs how much of the requested shift the encoder reproduces (train, and test
images whose targets are optimised here for the measurement)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import time

import numpy as np

from pipeline.flow.artifacts import StageInputError, load_analog, load_targets
from pipeline.flow.embedding_reuse import embedding_arrays, matching, read_embeddings, save_embeddings
from pipeline.flow.stage_data import analog_scores, input_box
from pipeline.flow.runner import Stage, StageContext

if TYPE_CHECKING:
    from pipeline.config import RootConfig

TEST_SHIFT_SAMPLES = 1000   # test images whose targets are optimised to measure the shift followed


def required(cfg: RootConfig) -> tuple:
    method = cfg.digital.retrain_method
    return ("encoder",) + (("targets",) if method != "through-analog" else ()) + \
        (("analog",) if method != "targets" else ())


def precheck(cfg: RootConfig) -> None:
    """through-analog / both: the configured encoder must be trainable through the block."""
    if cfg.digital.retrain_method != "targets":
        from pipeline.system.build import encoder
        from pipeline.system.through_analog import check_differentiable
        check_differentiable(encoder(cfg), cfg)


def _block(ctx: StageContext, model):
    """The block gradients come from: the trained model, or when the chips are frozen the chip
    in the loop (hardware.loop_chip) or the population of chips (hardware.loop_chips)."""
    from pipeline.hardware.settings import frozen
    from pipeline.hardware.population import loop_block
    if ctx.has("chips") and frozen(ctx.cfg):
        return loop_block(ctx, model)
    return model


def _targets(ctx: StageContext, ds):
    """The target embeddings (None without a targets input), checked against this config's training set."""
    tg = load_targets(ctx.input("targets")) if ctx.has("targets") else None
    if tg is not None and (len(tg["targets"]) != len(ds.x_train) or not np.array_equal(tg["y_train"], ds.y_train)):
        raise StageInputError(f"retrain-digital: the target embeddings ({len(tg['targets'])} rows) do not match the "
                              f"training set of this config ({len(ds.x_train)} images); use the same data settings")
    return tg


def body(ctx: StageContext) -> None:
    from pipeline.system.build import check_fitted_encoder, load_encoder
    from pipeline.system.input_optimization import optimize_inputs_for
    from pipeline.system.through_analog import check_differentiable
    ds = ctx.data
    tg = _targets(ctx, ds)
    enc = load_encoder(ctx.cfg, ctx.input("encoder"))
    check_differentiable(enc, ctx.cfg)
    model = load_analog(ctx.input("analog")) if ctx.has("analog") else None
    block = _block(ctx, model) if model is not None else None
    try:
        before = _round_embeddings(ctx, enc, ds)
        e0_train = enc.embed(ds.x_train) if before is None else before["x_train"].astype(np.float64)
        e0_test = test_t = None
        if block is not None:   # targets for test images, only to measure the shift followed
            n = min(len(ds.x_test), TEST_SHIFT_SAMPLES)
            e0_test = enc.embed(ds.x_test[:n])   # not a slice of the whole test set's: a batch of its own
            lo, hi = input_box(ctx.cfg, None)
            test_t = optimize_inputs_for(ctx.cfg, block, e0_test, ds.y_test[:n], lo, hi).targets
        t0 = time.perf_counter()
        hist = _retrain(ctx, enc, ds, tg, block)
        seconds = time.perf_counter() - t0
        check_fitted_encoder(ctx.cfg, enc, ds.x_train, when="after retraining")
        ctx.log_history(hist, "retrain_")
        after = embedding_arrays(enc, ds)   # every split once: the shift, end to end, the next embed stage
        msg = _log_shift(ctx, enc, ds, hist, seconds, (e0_train, None if tg is None else tg["targets"]),
                         (e0_test, test_t), after)
        if model is not None:
            msg += _log_end_to_end(ctx, enc, ds, model, block, after["x_test"].astype(np.float64))
    finally:
        if block is not None and block is not model:
            block.close()
        if model is not None:
            model.close()
    ctx.say(msg)
    enc.save(ctx.output("encoder"))
    save_embeddings(ctx.output("embeddings"), after)


def _round_embeddings(ctx: StageContext, enc, ds) -> dict | None:
    """The round's embeddings (the embed stage's, float32) when they are this encoder's of this
    data (pipeline.flow.embedding_reuse), so the images are not embedded a second time."""
    if not ctx.has("embeddings"):
        return None
    stored = matching(read_embeddings(ctx.input("embeddings")), enc, ds)
    if stored is None:
        ctx.say("the embeddings input is not this encoder's embeddings of this data: embedding the images again")
    return stored


def _retrain(ctx: StageContext, enc, ds, tg, block) -> dict:
    """Retrain `enc` by digital.retrain_method; the training history (per-epoch lists)."""
    from pipeline.system.through_analog import grad_fn_for, through_cost, trace_per_epoch
    d = ctx.cfg.digital
    labels = ds.y_train if d.class_weight > 0 else None
    hist = {}
    if d.retrain_method in ("targets", "both"):
        ctx.say(f"fitting {type(enc).__name__} to {len(ds.x_train)} target embeddings, {d.retrain_epochs} "
                f"epochs, target weight {d.target_weight}, class weight {d.class_weight}")
        enc.fit_targets(ds.x_train, tg["targets"], labels, epochs=d.retrain_epochs,
                        target_weight=d.target_weight, class_weight=d.class_weight,
                        verbose=ctx.keras_verbose)
        hist.update(getattr(enc, "history_", {}))
    if d.retrain_method in ("through-analog", "both"):
        cost = ("the block's own cost" if d.through_loss == "block"
                else f"cross-entropy at T = {d.through_temperature:g} V")
        ctx.say(f"training {type(enc).__name__} through the analog block (EP input gradients of {cost}), "
                f"{d.retrain_epochs} epochs, lr {d.through_lr}, class weight {d.class_weight}")
        grad_fn = grad_fn_for(block, ds.y_train, ctx.cfg.input_optimization.method, loss=through_cost(ctx.cfg))
        enc.fit_through(ds.x_train, ds.y_train, grad_fn,
                        epochs=d.retrain_epochs, batch_size=d.batch_size, learning_rate=d.through_lr,
                        class_weight=d.class_weight, verbose=ctx.keras_verbose)
        hist.update(getattr(enc, "history_", {}))
        # the cost descended and the block's accuracy during retraining: does the descent descend?
        curve = trace_per_epoch(grad_fn.trace, len(ds.x_train), d.batch_size)
        hist.update({f"through_{k}": v for k, v in curve.items()})   # logged as retrain_through_*
        ctx.say("through the block, per epoch: cost " + ", ".join(f"{c:.4g}" for c in curve["cost"]) +
                "; block's training accuracy " + ", ".join(f"{a:.4f}" for a in curve["train_accuracy"]))
    return hist


def _log_shift(ctx: StageContext, enc, ds, hist: dict, seconds: float, train: tuple, test: tuple,
               after: dict) -> str:
    """The retrained encoder's accuracy and how much of the requested shift it reproduces
    (train: (embeddings before, targets), test likewise; a None target is skipped; `after`:
    the embeddings after retraining, embedding_arrays); the message."""
    from pipeline.system.through_analog import shift_followed
    acc = enc.evaluate(ds.x_test, ds.y_test)
    metrics = {"digital_test_accuracy": acc, "target_mse": (hist.get("target_mse") or [None])[-1],
               "retrain_seconds": seconds}
    for part, (before, targets) in (("train", train), ("test", test)):
        if targets is not None:   # the test subset embedded on its own, as before retraining
            e = after["x_train"].astype(np.float64) if part == "train" else enc.embed(ds.x_test[:len(targets)])
            s = shift_followed(before, targets, e)
            metrics.update({f"shift_reproduced_{part}": s["reproduced"], f"shift_residual_{part}": s["residual"]})
    ctx.log(metrics)
    ctx.log_parent({"round_digital_test_accuracy": acc}, step=ctx.round + 1)
    msg = f"digital-only test accuracy {acc:.4f}"
    if "shift_reproduced_train" in metrics:
        msg += f"; shift reproduced {metrics['shift_reproduced_train']:.3f} (train)"
    if "shift_reproduced_test" in metrics:
        msg += f", {metrics['shift_reproduced_test']:.3f} (test)"
    return msg


def _log_end_to_end(ctx: StageContext, enc, ds, model, block, e_test) -> str:
    """End-to-end test accuracy (test embeddings `e_test`) with the round's analog block and,
    when the chips are frozen, on the chip(s) in the loop; the message's tail."""
    s = analog_scores(model, e_test, ds.y_test)
    ctx.log({"end_to_end_test_accuracy": s["accuracy"]})
    ctx.log_parent({"round_retrained_end_to_end_test_accuracy": s["accuracy"]})
    msg = f"; end to end with the round's analog block {s['accuracy']:.4f}"
    if block is not model:   # the frozen chip(s) in the loop: end-to-end accuracy after this round
        from pipeline.hardware.population import loop_indices, loop_label
        a = block.accuracy(e_test, ds.y_test)     # a population's: the mean over its chips
        idx = loop_indices(ctx.cfg)
        ctx.log({"loop_chip_end_to_end_test_accuracy": a,
                 **({f"chip{idx[0]}_end_to_end_test_accuracy": a} if len(idx) == 1 else {})})
        ctx.log_parent({"round_chip_e2e_accuracy": a}, step=ctx.round + 1)
        msg += f", on {loop_label(ctx.cfg)} {a:.4f}"
    return msg


STAGE = Stage(name="retrain-digital",
              help="retrain the encoder (from its current weights): to the target embeddings, through the analog "
                   "block's EP input gradient, or both (digital.retrain_method)",
              needs=("encoder", "targets"), optional=("analog", "targets", "chips", "embeddings"),
              produces=("encoder", "embeddings"),
              inputs=required, precheck=precheck, body=body)
