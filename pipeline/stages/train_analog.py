"""train-analog: train the analog block by Equilibrium Propagation, on embeddings (images)
or on the tabular data as volts; continues a given block for cotrain.analog_epochs."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pipeline.flow.artifacts import load_analog
from pipeline.flow.stage_data import analog_data, analog_scores, n_classes
from pipeline.flow.inputs import is_image_data, takes_pixels
from pipeline.flow.runner import Stage, StageContext

if TYPE_CHECKING:
    from pipeline.config import RootConfig


def required(cfg: RootConfig) -> tuple:
    """Images: embeddings (digital.encoder: none: optional, the pixels as volts); tabular data:
    none (the data set itself, as volts)."""
    return ("embeddings",) if is_image_data(cfg) and not takes_pixels(cfg) else ()


class _MlflowEpochLogger:
    """AnalogModel callback: every epoch's logs as MLflow metrics (step = epoch)."""

    def __init__(self, ctx: StageContext):
        self.ctx = ctx

    def on_train_begin(self, model): ...

    def on_epoch_end(self, epoch, logs, model):
        self.ctx.log(logs, step=epoch + 1, final=False)

    def on_train_end(self, model): ...


def _model(ctx: StageContext, data: dict):
    from pipeline.system import build
    from pipeline.system.analog_block import compile_from_config
    cfg, t = ctx.cfg, ctx.cfg.training
    if ctx.has("analog"):
        model = load_analog(ctx.input("analog"))
        epochs = cfg.cotrain.analog_epochs or t.epochs
        compile_from_config(model, cfg, epochs)   # this run's β, loss, optimiser, engine
        ctx.say(f"continuing the analog block from epoch {model.epoch} for {epochs} epochs")
    else:
        model = build.analog_model(cfg, data["x_train"].shape[1], n_classes(data))
        epochs = t.epochs
        ctx.say(f"new analog block {data['x_train'].shape[1]}→{cfg.analog.hidden}→{n_classes(data)}, "
                f"{epochs} epochs")
    return model, epochs


def _plots_and_netlist(ctx: StageContext, model, data: dict) -> None:
    from pipeline.flow import plots
    plots_dir = ctx.folder / "plots"
    plots.learning_curves(model.history.history, plots_dir / "learning_curves.png",
                          title=f"analog block ({ctx.stage} r{ctx.round})", epochs=np.array(model.history.epoch) + 1)
    if model.history.histograms:
        plots.histograms(model.history.histograms[-1], plots_dir / "histograms.png",
                         title=f"conductances and hidden voltages after epoch {model.epoch}")
    ctx.artifact(plots_dir, "plots")
    try:
        netlist = model.to_netlist(data["x_test"][:1])
        path = ctx.folder / "netlist" / "analog_block.cir"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(netlist)
        ctx.artifact(path.parent, "netlist")
    except Exception as exc:   # the netlist writer is optional for training
        ctx.say(f"warning: no SPICE netlist ({type(exc).__name__}: {exc})")


def body(ctx: StageContext) -> None:
    cfg, t = ctx.cfg, ctx.cfg.training
    data = analog_data(ctx)
    model, epochs = _model(ctx, data)
    try:
        model.fit(data["x_train"], data["y_train"], epochs=epochs, batch_size=t.batch_size,
                  validation_data=(data["x_val"], data["y_val"]), callbacks=[_MlflowEpochLogger(ctx)],
                  verbose=1 if ctx.verbose else 0, seed=cfg.seed)
        last = {k: v[-1] for k, v in model.history.history.items() if v}
        ctx.log({"train_accuracy": last.get("accuracy"), "train_loss": last.get("loss"), "epochs_total": model.epoch})
        scores = {split: analog_scores(model, data[f"x_{split}"], data[f"y_{split}"]) for split in ("val", "test")}
        # validation metrics are already logged per epoch (val_*)
        ctx.log({f"test_{k}": v for k, v in scores["test"].items()})
        ctx.say(f"test accuracy {scores['test']['accuracy']:.4f}, val {scores['val']['accuracy']:.4f}, "
                f"power {scores['test']['power_mean']:.3g} W")
        ctx.log_parent({"round_analog_test_accuracy": scores["test"]["accuracy"],
                        "round_analog_val_accuracy": scores["val"]["accuracy"],
                        "round_analog_train_accuracy": last.get("accuracy"),
                        "round_power_mean": scores["test"]["power_mean"]})
        model.save(ctx.output("analog"))
        _plots_and_netlist(ctx, model, data)
    finally:
        model.close()


STAGE = Stage(name="train-analog",
              help="train the analog block by Equilibrium Propagation (on embeddings, or tabular data)",
              optional=("embeddings", "analog"), inputs=required, produces=("analog",),
              new_round_after=("retrain-digital",), body=body)
