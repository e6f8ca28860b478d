"""mixsig phases [CONFIG]: what cut-short EP phases cost on a tabular config's block
(pipeline/system/phase_study.py): the gradient's cosine to the exact one over a grid of
(free, nudged) durations, and the test accuracy after training with the phases cut."""
from __future__ import annotations

import json

import click

from pipeline.commands import options as opt

HELP = ("EP with its free and nudged phases cut short (transients): cosine to the exact gradient over a grid "
        "of durations, before and after EP training, and test accuracy after training with the phases cut")


def _ps_list(ctx, param, value):
    """'5,10,20' (ps) → seconds; 'free:nudged' pairs for --pairs."""
    if value is None:
        return None
    try:
        items = [v.strip() for v in value.split(",") if v.strip()]
        out = [tuple(float(p) * 1e-12 for p in v.split(":")) if param.name == "pairs" else float(v) * 1e-12
               for v in items]
    except ValueError:
        raise click.BadParameter(f"{value!r}: comma-separated durations in ps") from None
    flat = [p for v in out for p in (v if isinstance(v, tuple) else (v,))]
    if any(not p > 0 for p in flat) or any(isinstance(v, tuple) and len(v) != 2 for v in out):
        raise click.BadParameter(f"{value!r}: durations > 0 ps" + (" as FREE:NUDGED pairs" if param.name == "pairs" else ""))
    return out


@click.command("phases", help=HELP + ". CONFIG: a tabular config (iris, wine, xor) without a hardware: section "
               "[default: experiments/iris.yaml]; its block, data split and training section (epochs, batch, "
               "optimiser, β) are used as they are, --set changes them.", short_help=HELP)
@opt.config_argument
@opt.overrides
@click.option("--durations", callback=_ps_list, default="5,10,20,50,100,200,500,1000,2000", show_default=True,
              help="phase durations of the cosine grid, ps")
@click.option("--train-durations", callback=_ps_list, default="5,10,20,50,100,200,500,1000", show_default=True,
              help="train with both phases cut at each of these, ps")
@click.option("--pairs", callback=_ps_list, default="5:1000,1000:5,1000:50", show_default=True,
              help="further trainings with the free and nudged phases cut at different times, FREE:NUDGED in ps")
@click.option("--steps", type=click.IntRange(min=1), default=50, show_default=True, help="time steps per phase")
@click.option("--no-grid", is_flag=True, help="skip the cosine grid (and the plot)")
@click.option("--plot", type=click.Path(dir_okay=False, writable=True), default=None, help="draw both to this PNG")
@click.option("--json", "json_", is_flag=True, help="print the figures as JSON")
def command(config, overrides, durations, train_durations, pairs, steps, no_grid, plot, json_) -> int:
    from pathlib import Path

    from pipeline.config import load_config
    from pipeline.system.phase_study import GRID_SAMPLES, run_study
    cfg = load_config(config or Path(__file__).resolve().parents[2] / "experiments" / "iris.yaml", overrides)
    say = (lambda s: None) if json_ else (lambda s: print(s, flush=True))
    study = run_study(cfg, durations, [(t, t) for t in train_durations] + list(pairs), steps, not no_grid, say)
    if plot and not no_grid:
        from pipeline.flow.plots import phase_durations
        say(f"plot: {phase_durations(study, train_durations, plot)}")
    if json_:
        grids = {k: {"cosine": g.tolist(), "ep_cosine": ep} for k, (g, ep) in study["grids"].items()}
        print(json.dumps({**study, "grids": grids}, indent=1))
        return 0
    for state, (grid, ep) in study["grids"].items():
        print(f"\ncosine to the exact gradient ({GRID_SAMPLES} training samples, {state} conductances); EP at the "
              f"operating points {ep:.6f}")
        print("| free \\ nudged (ps) | " + " | ".join(f"{d * 1e12:g}" for d in durations) + " |")
        print("|---" * (len(durations) + 1) + "|")
        for d, row in zip(durations, grid):
            print(f"| {d * 1e12:g} | " + " | ".join(f"{v:.4f}" for v in row) + " |")
    print(f"\n| free phase cut at (ps) | nudged phases cut at (ps) | test accuracy, operating point | read at t |")
    print("|---|---|---|---|")
    print(f"| ∞ (EP at the operating points) | ∞ | {study['ep_accuracy']:.3f} | {study['ep_accuracy']:.3f} |")
    for tf, tn, acc, read in study["trained"]:
        print(f"| {tf * 1e12:g} | {tn * 1e12:g} | {acc:.3f} | {read:.3f} |")
    return 0
