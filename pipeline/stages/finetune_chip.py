"""finetune-chip: in-situ EP fine-tuning of every programmed chip (analog.hardware.finetune).

Each chip of the `chips` input is trained for `hardware.finetune_epochs` EP epochs on the
training embeddings: the free and nudged solves run on the chip's realised circuit and
conductances, read with noise at every mini-batch; the updates become device pulses
(PulsedOptimizer with the configured optimiser as base rule, `hardware.pulse_rule`,
learning rate `hardware.finetune_lr`), stuck devices take none. The programming errors are
trained out on the chip; the fine-tuned chips are this stage's `chips` output (a co-training
continues with them), and their end-to-end test accuracy at every read time is the scenario
`e2e_acc_insitu` (mean over chips; `_tmax` at the last read time).

In a co-training it runs right after `program` when hardware.finetune_epochs > 0.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.errors import SetupError

import numpy as np

from pipeline.flow.artifacts import load_analog
from pipeline.flow.stage_data import analog_data
from pipeline.flow.inputs import is_image_data
from pipeline.flow.runner import Stage, StageContext

if TYPE_CHECKING:
    from pipeline.config import RootConfig


def required(cfg: RootConfig) -> tuple:
    return ("chips", "analog", "embeddings") if is_image_data(cfg) else ("chips", "analog")


def precheck(cfg: RootConfig) -> None:
    if cfg.hardware is None:
        raise SetupError("the config has no hardware: section (the chips' devices and hardware.finetune_epochs)")
    if not cfg.hardware.finetune_epochs:
        raise SetupError("hardware.finetune_epochs=0: nothing to fine-tune (e.g. --set hardware.finetune_epochs=1)")


def body(ctx: StageContext) -> None:
    from analog.hardware import finetune

    from pipeline.hardware import chip_files
    from pipeline.hardware import chip_logging
    from pipeline.hardware import chip_metrics
    from pipeline.hardware import settings as hw
    from pipeline.system.analog_block import compile_from_config, optimizer_for
    cfg = ctx.cfg
    epochs = cfg.hardware.finetune_epochs
    data = analog_data(ctx)
    model = load_analog(ctx.input("analog"))
    compile_from_config(model, cfg, epochs)         # the loss, β and nudging EP uses on the chip
    chips = chip_files.load_chips(ctx.input("chips"))
    out = ctx.output("chips")
    times = hw.eval_times(cfg)
    t_train = times[0]
    try:
        before = chip_metrics.accuracy_grid(chips, data["x_test"], data["y_test"], times[:1])[0]
        for i, chip in enumerate(chips):
            opt = optimizer_for(cfg, chip)
            ctx.say(f"chip {i} (seed {chip.seed}): {epochs} in-situ EP epoch(s) on {len(data['x_train'])} samples, "
                    f"{opt.base} lr {opt.lr:g}, pulse rule {opt.rule}, read at t = {t_train:g} s; "
                    f"test accuracy before {before[i]:.4f}")

            def log_epoch(epoch, logs, i=i):
                ctx.log({f"insitu_chip{i}_{k}": v for k, v in logs.items()}, step=epoch + 1, final=False)
            h = finetune(chip, data["x_train"], data["y_train"], loss=model.loss, beta=model.beta,
                         nudging=model.nudging, optimizer=opt, epochs=epochs, batch_size=cfg.training.batch_size,
                         t=t_train, seed=cfg.seed + i, progress=bool(ctx.verbose), on_epoch=log_epoch)
            ctx.log({f"insitu_chip{i}_train_accuracy": h["accuracy"][-1], f"insitu_chip{i}_moved_rel":
                     float(np.sum(h["moved_rel"])),
                     f"insitu_chip{i}_pulses_per_device": float(np.sum(h["pulses_per_device"]))})
            chip_files.save_chip(chip, out / f"chip{i}", data["x_test"][:1])
        acc = chip_metrics.accuracy_grid(chips, data["x_test"], data["y_test"], times)
    finally:
        for chip in chips:
            chip.close()
        model.close()
    g = chip_logging.log_grid(ctx, times, acc)
    ctx.log({"programmed_acc_mean_t0": before.mean(), "insitu_gain_t0": acc[0].mean() - before.mean()})
    chip_logging.log_scenario(ctx, "insitu", times, acc)
    if hw.frozen(cfg):   # round 0 of the per-round end-to-end accuracy: the loop chip as fine-tuned (over program's value)
        from pipeline.hardware.population import loop_indices
        ctx.log_parent({"round_chip_e2e_accuracy": float(acc[0, loop_indices(cfg)].mean())}, step=0)
    chip_logging.plot_accuracy_vs_time(
        ctx, {"programmed (before)": ([times[0]], [before.mean()], [chip_metrics.spread(before)])},
        f"{len(chips)} chip(s) fine-tuned in situ", times, acc,
        f"'{chips[0].spec.name}' chips after {epochs} in-situ EP epoch(s)")
    ctx.say(f"test accuracy {before.mean():.4f} ± {chip_metrics.spread(before):.4f} programmed → "
            f"{g['chip_acc_mean_t0']:.4f} ± "
            f"{g['chip_acc_std_t0']:.4f} fine-tuned at t = 0, {g['chip_acc_mean_tmax']:.4f} at {times[-1]:g} s")


STAGE = Stage(name="finetune-chip",
              help="in-situ EP fine-tuning of every programmed chip (hardware.finetune_epochs): the programming "
                   "errors trained out on the chip",
              needs=("chips", "analog"), optional=("embeddings",), inputs=required, precheck=precheck,
              produces=("chips",), from_stages=("program", "finetune-chip"), cotrain_after="program",
              cotrain_when=lambda cfg: cfg.hardware is not None and cfg.hardware.finetune_epochs > 0, body=body)
