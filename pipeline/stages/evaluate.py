"""evaluate: test accuracies of the analog block (on embeddings or tabular volts), the
encoder alone and end to end, and a Keras backprop baseline of the same network; with
programmed chips (a `chips` input), every chip at every read time in hardware.times, end
to end, next to the ideal block."""
from __future__ import annotations

from typing import TYPE_CHECKING

import os
import time

from pipeline.flow.artifacts import load_analog
from pipeline.flow.stage_data import analog_data, analog_scores, n_classes
from pipeline.flow.inputs import is_image_data, takes_pixels
from pipeline.flow.runner import Option, Stage, StageContext

if TYPE_CHECKING:
    from pipeline.config import RootConfig


def required(cfg: RootConfig) -> tuple:
    """Images: the block, its embeddings and the encoder (end to end); tabular, or images
    without an encoder (digital.encoder: none, the block takes the pixels): the block."""
    return ("analog", "embeddings", "encoder") if is_image_data(cfg) and not takes_pixels(cfg) else ("analog",)


def body(ctx: StageContext) -> None:
    cfg = ctx.cfg
    data = analog_data(ctx)
    model = load_analog(ctx.input("analog"))
    results = {}
    x_e2e, y_e2e = data["x_test"], data["y_test"]   # what reaches the block end to end
    cal = (data["x_val"], data["y_val"])              # a chip's trim calibration (hardware.output_trim)
    try:
        s = analog_scores(model, data["x_test"], data["y_test"])
        results.update(analog_test_accuracy=s["accuracy"], analog_test_loss=s["loss"], power_mean=s["power_mean"],
                       nonconverged=s["nonconverged"])
        if ctx.has("encoder"):
            from pipeline.system.build import load_encoder
            ds = ctx.data
            enc = load_encoder(ctx.cfg, ctx.input("encoder"))
            results["digital_test_accuracy"] = enc.evaluate(ds.x_test, ds.y_test)
            x_e2e, y_e2e = enc.embed(ds.x_test), ds.y_test
            n_cal = cfg.hardware.output_trim if cfg.hardware is not None else 0
            if n_cal:
                cal = (enc.embed(ds.x_val[:n_cal]), ds.y_val[:n_cal])
            results["end_to_end_test_accuracy"] = analog_scores(model, x_e2e, y_e2e)["accuracy"]
        elif takes_pixels(cfg):    # pixels → block is the whole system
            results["end_to_end_test_accuracy"] = s["accuracy"]
    finally:
        model.close()
    if ctx.has("chips"):
        evaluate_chips(ctx, x_e2e, y_e2e, results.get("end_to_end_test_accuracy", results["analog_test_accuracy"]),
                       cal)
    if cfg.transient is not None:
        from pipeline.hardware.transient_report import evaluate_transients
        results.update(evaluate_transients(ctx, x_e2e))
    if cfg.baseline.enabled:
        results.update(software_baseline(cfg, data, verbose=ctx.keras_verbose))
    ctx.log(results)
    ctx.log_parent({f"final_{k}": v for k, v in results.items()}, step=ctx.round)
    ctx.say(", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in results.items()))
    log_system(ctx)


def log_system(ctx: StageContext) -> None:
    """The evaluated system as this run's MLflow model (images only); registered when
    mlflow.register_model is set and the run stands alone (a co-training registers its parent's)."""
    from pipeline.serving.mlflow_model import log_run_system, register_name
    parts = {k: ctx.input(k) for k in ("analog", "encoder", "chips") if ctx.has(k)}
    uri = log_run_system(ctx.cfg, parts, ctx.run_id, None if ctx.parent_run_id else register_name(ctx.cfg))
    if uri:
        ctx.say(f"MLflow model {uri}")


def evaluate_chips(ctx: StageContext, x, y, ideal: float, cal: tuple | None = None) -> None:
    """Every chip at every read time, end to end (the run's encoder → chip), next to the
    ideal block; with hardware.frozen after co-training rounds: the e2e_acc_cotrained scenario."""
    from pipeline.hardware import chip_files
    from pipeline.hardware import chip_logging
    from pipeline.hardware import chip_metrics
    from pipeline.hardware import settings as hw
    chips = chip_files.load_chips(ctx.input("chips"))
    times = hw.eval_times(ctx.cfg)
    try:
        # the trimmed scenario is the co-trained one's, trimmed
        trim = chip_logging.trim_set(ctx.cfg, cal) if hw.frozen(ctx.cfg) and ctx.round > 0 else None
        acc, trimmed = chip_metrics.accuracy_grids(chips, x, y, times, trim)
        if trimmed is not None:
            chip_logging.log_trimmed(ctx, "cotrained", times, trimmed)
    finally:
        for chip in chips:
            chip.close()
    g = chip_logging.log_grid(ctx, times, acc)
    if hw.frozen(ctx.cfg) and ctx.round > 0:
        from pipeline.hardware.population import log_split
        chip_logging.log_scenario(ctx, "cotrained", times, acc)
        log_split(ctx, "cotrained", acc)
    chip_logging.plot_accuracy_vs_time(ctx, {"ideal block": (times, [ideal] * len(times), None)},
                                       f"{len(chips)} chip(s), mean ± spread", times, acc,
                                       f"'{chips[0].spec.name}' chips, end to end ({ctx.stage} r{ctx.round})")
    ctx.say(f"chips: {g['chip_acc_mean_t0']:.4f} ± {g['chip_acc_std_t0']:.4f} at t = 0, "
            f"{g['chip_acc_mean_tmax']:.4f} ± {g['chip_acc_std_tmax']:.4f} at {times[-1]:g} s (ideal {ideal:.4f})")


def software_baseline(cfg: RootConfig, data: dict, verbose: int = 0) -> dict:
    """The same dense network (inputs → analog.hidden → classes) trained by backprop in
    Keras on the same embeddings: how close EP on the circuit gets."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    b = cfg.baseline
    keras.utils.set_random_seed(cfg.seed)
    inputs = keras.Input(shape=(data["x_train"].shape[1],))
    h = inputs
    for units in cfg.analog.hidden:
        h = keras.layers.Dense(units, activation="tanh")(h)
    net = keras.Model(inputs, keras.layers.Dense(n_classes(data))(h), name="software_baseline")
    net.compile(optimizer=keras.optimizers.Adam(b.lr),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    t0 = time.perf_counter()
    net.fit(data["x_train"], data["y_train"], epochs=b.epochs, batch_size=b.batch_size,
            validation_data=(data["x_val"], data["y_val"]), verbose=verbose)
    _, acc = net.evaluate(data["x_test"], data["y_test"], verbose=0)
    return {"baseline_test_accuracy": float(acc), "baseline_seconds": time.perf_counter() - t0}


STAGE = Stage(name="evaluate",
              help="test accuracies: digital-only, analog on embeddings, end to end, Keras backprop baseline",
              needs=("analog",), optional=("embeddings", "encoder", "chips"), inputs=required, body=body,
              options=(Option("--register", "mlflow.register_model",
                              "register the evaluated system's MLflow model under this name"),))
