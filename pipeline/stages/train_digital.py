"""train-digital: train the digital encoder and its classification head (images only)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.errors import SetupError

from pipeline.flow.artifacts import PipelineError
from pipeline.flow.inputs import has_encoder, is_image_data
from pipeline.flow.runner import Stage, StageContext

if TYPE_CHECKING:
    from pipeline.config import RootConfig


def precheck(cfg: RootConfig) -> None:
    """The configured encoder builds and honours the contract on a sample, before any run."""
    if is_image_data(cfg) and not has_encoder(cfg):
        raise SetupError("digital.encoder='none': the analog block takes the image pixels, there is no encoder "
                         "to train or co-train; run `mixsig train-analog CONFIG`, then `mixsig evaluate "
                         "--from-run RUN_ID`")
    if is_image_data(cfg):
        from pipeline.system.build import check_configured_encoder
        check_configured_encoder(cfg)


def body(ctx: StageContext) -> None:
    from pipeline.system import build
    ds = ctx.data
    if ds.x_train.ndim != 3:
        raise PipelineError(f"train-digital needs images; data.dataset={ds.name} is tabular")
    d = ctx.cfg.digital
    enc = build.encoder(ctx.cfg)
    ctx.say(f"{type(enc).__name__} → {enc.embedding_dim} volts in [{enc.v_low}, {enc.v_high}], "
            f"{len(ds.x_train)} images, {d.epochs} epochs")
    enc.fit(ds.x_train, ds.y_train, epochs=d.epochs, batch_size=d.batch_size, verbose=ctx.keras_verbose,
            validation_data=(ds.x_val, ds.y_val))
    build.check_fitted_encoder(ctx.cfg, enc, ds.x_train)
    ctx.log_history(getattr(enc, "history_", {}), "digital_")
    if getattr(enc, "history_", None):
        from pipeline.flow import plots
        plots.learning_curves(enc.history_, ctx.folder / "plots" / "digital_learning_curves.png",
                              title=f"digital encoder ({type(enc).__name__})")
        ctx.artifact(ctx.folder / "plots", "plots")
    acc_val = enc.evaluate(ds.x_val, ds.y_val)
    acc_test = enc.evaluate(ds.x_test, ds.y_test)
    ctx.log({"digital_val_accuracy": acc_val, "digital_test_accuracy": acc_test})
    macs = enc.macs_per_image() if callable(getattr(enc, "macs_per_image", None)) else None
    if macs is not None:   # plug-ins need not count them
        ctx.log({"digital_macs_per_image": float(macs)})
        ctx.log_parent({"digital_macs_per_image": float(macs)})
    ctx.log_parent({"round_digital_test_accuracy": acc_test})
    ctx.say(f"digital-only test accuracy {acc_test:.4f}")
    enc.save(ctx.output("encoder"))


STAGE = Stage(name="train-digital", help="train the digital encoder and its classification head",
              produces=("encoder",), precheck=precheck, body=body)
