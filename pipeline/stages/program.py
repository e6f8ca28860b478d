"""program: write a trained analog block onto `hardware.chips` chips (analog.hardware.program,
chip i seeded hardware.seed + i) and measure what programming did: target against realised
conductances (histograms, mean and largest |ΔG|/g_max, stuck counts) and each chip's test
accuracy at every read time in `hardware.times`, next to the ideal block's. Stores every chip
and its SPICE netlist as the `chips` artifact (pipeline/hardware/chip_files.py describes the folder).

In a co-training with a `hardware:` section it runs right after train-analog; with
`hardware.frozen` the block is trained and programmed once (round 0) and the later rounds
co-train the encoder on the chips.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.errors import SetupError

import numpy as np

from pipeline.flow.artifacts import load_analog
from pipeline.flow.stage_data import analog_data, analog_scores
from pipeline.flow.inputs import is_image_data
from pipeline.flow.runner import Stage, StageContext

if TYPE_CHECKING:
    from pipeline.config import RootConfig


def required(cfg: RootConfig) -> tuple:
    """The analog block (a train-analog run) and, for images, the embeddings it was trained on."""
    return ("analog", "embeddings") if is_image_data(cfg) else ("analog",)


#: training samples the ADC's full scale is calibrated on (hardware.adc.calibrate)
CALIBRATION_SAMPLES = 2048


def precheck(cfg: RootConfig) -> None:
    if cfg.hardware is None:
        raise SetupError("the config has no hardware: section to program onto (e.g. --set hardware.preset=pcm)")


def body(ctx: StageContext) -> None:
    from pipeline.hardware import settings as hw
    from pipeline.system.analog_block import hardware_spec
    data = analog_data(ctx)
    model = load_analog(ctx.input("analog"))
    spec = hardware_spec(ctx.cfg)
    chips = []
    try:
        stats = _program_chips(ctx, model, spec, hw.chip_seeds(ctx.cfg), data, chips)
        summary = _log_programming(ctx, stats, spec, len(chips))
        times, acc, ideal, g = _log_accuracy(ctx, chips, model, data, spec)
        ctx.say(f"mean |ΔG|/g_max {summary['prog_mean_abs_dG_rel']:.4f} (max {summary['prog_max_abs_dG_rel']:.4f}), "
                f"stuck {summary['stuck_g_min_count']:.0f} low / {summary['stuck_g_max_count']:.0f} high per chip; "
                f"test accuracy ideal {ideal:.4f}, chips {g['chip_acc_mean_t0']:.4f} ± {g['chip_acc_std_t0']:.4f} "
                f"at t = 0, {g['chip_acc_mean_tmax']:.4f} at {times[-1]:g} s")
    finally:
        for chip in chips:
            chip.close()
        model.close()


def _program_chips(ctx: StageContext, model, spec, seeds: list[int], data: dict, chips: list) -> list[dict]:
    """Program, calibrate and save one chip per seed (appended to `chips`, closed by the
    caller even when one fails); the programming statistics of each."""
    from analog.hardware import program

    from pipeline.hardware import chip_files, chip_metrics
    ctx.say(f"programming {len(seeds)} chip(s) on '{spec.name}' (seeds {seeds[0]}..{seeds[-1]})")
    out = ctx.output("chips")
    stats = []
    for i, seed in enumerate(seeds):
        chip = program(model, spec, seed)
        chips.append(chip)
        chip.calibrate_adc(data["x_train"][:CALIBRATION_SAMPLES])   # hardware.adc.calibrate: full scale
        chip_files.save_chip(chip, out / f"chip{i}", data["x_test"][:1])
        s = chip_metrics.programming_stats(chip, model)
        ctx.log({f"chip_{k}": v for k, v in s.items() if not k.startswith("_")}, step=i, final=False)
        stats.append(s)
    return stats


def _log_programming(ctx: StageContext, stats: list[dict], spec, n_chips: int) -> dict:
    """The mean programming figures over the chips, and the target-vs-realised histograms."""
    from pipeline.flow import plots
    summary = {"devices_per_chip": stats[0]["devices"],
               "prog_mean_abs_dG_rel": float(np.mean([s["mean_abs_dG_rel"] for s in stats])),
               "prog_max_abs_dG_rel": float(np.max([s["max_abs_dG_rel"] for s in stats])),
               "stuck_g_min_count": float(np.mean([s["stuck_g_min"] for s in stats])),
               "stuck_g_max_count": float(np.mean([s["stuck_g_max"] for s in stats]))}
    ctx.log(summary)
    plots.programming_histograms(np.concatenate([s["_target"] for s in stats]),
                                 np.concatenate([s["_realised"] for s in stats]), spec.device.g_max,
                                 ctx.folder / "plots" / "programming.png",
                                 title=f"'{spec.name}': target vs realised conductances, {n_chips} chip(s)")
    return summary


def _log_accuracy(ctx: StageContext, chips: list, model, data: dict, spec):
    """Each chip's test accuracy at every read time beside the ideal block's: metrics, the
    scenarios, round 0 of a frozen co-training, the plot. (times, accuracy grid, ideal, grid metrics)"""
    from pipeline.flow import plots
    from pipeline.hardware import chip_logging, chip_metrics
    from pipeline.hardware import settings as hw
    cfg = ctx.cfg
    times = hw.eval_times(cfg)
    acc, trimmed = chip_metrics.accuracy_grids(chips, data["x_test"], data["y_test"], times,
                                               chip_logging.trim_set(cfg, (data["x_val"], data["y_val"])))
    ideal = analog_scores(model, data["x_test"], data["y_test"])["accuracy"]
    ctx.log({"ideal_test_accuracy": ideal})
    g = chip_logging.log_grid(ctx, times, acc)
    chip_logging.log_scenario(ctx, "ideal", times, ideal=ideal)
    chip_logging.log_scenario(ctx, hw.programmed_scenario(cfg), times, acc)
    if hw.frozen(cfg):   # round 0 of the per-round end-to-end accuracy on the loop chip(s) (summary.round_e2e)
        from pipeline.hardware.population import log_split, loop_indices
        a = float(acc[0, loop_indices(cfg)].mean())
        ctx.log_parent({"round_chip_e2e_accuracy": a, "loop_chip_programmed_accuracy": a}, step=0)
        log_split(ctx, hw.programmed_scenario(cfg), acc)
    if trimmed is not None:
        chip_logging.log_trimmed(ctx, hw.programmed_scenario(cfg), times, trimmed)
    plots.accuracy_vs_time({"ideal block": (times, [ideal] * len(times), None),
                            f"{len(chips)} chip(s), mean ± spread": (times, acc.mean(1),
                                                                    [chip_metrics.spread(r) for r in acc])},
                           ctx.folder / "plots" / "accuracy_vs_time.png",
                           title=f"'{spec.name}' chips, test data the block was trained for")
    ctx.artifact(ctx.folder / "plots", "plots")
    return times, acc, ideal, g


STAGE = Stage(name="program",
              help="program the trained analog block onto hardware.chips chips; their accuracy over read times",
              needs=("analog",), optional=("embeddings",), inputs=required, precheck=precheck,
              produces=("chips",), kinds={"chips": ("chips", "the programmed chips and their netlists (program)")},
              from_stages=("train-analog",), cotrain_after="train-analog",
              cotrain_when=lambda cfg: cfg.hardware is not None, body=body)
