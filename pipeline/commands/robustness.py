"""mixsig robustness RUN_ID: the sensitivity map of a trained block (pipeline/hardware/robustness.py),
logged as its own MLflow run (table, JSON, plot) in the experiment of RUN_ID."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import click

from pipeline.commands import options as opt

HELP = "accuracy of a trained block against each non-ideality alone (a sensitivity map), logged to MLflow"


@click.command("robustness", help=HELP + ". RUN_ID: a train-analog run (or any run naming an analog block, "
               "or a co-training parent: its last train-analog run); test data: the embeddings the block was "
               "trained on (images) or the config's tabular data.", short_help=HELP)
@click.argument("run_id")
@click.option("--axes", help="comma-separated axes to map (default: all): prog_sigma, levels, on_off, stuck, "
                             "drift_time, read_noise, is_sigma, vto_sigma, gain_sigma, offset_sigma, dac_bits, adc_bits, "
                             "adc_range, r_segment")
@click.option("--grid", "grid", multiple=True, metavar="AXIS=V1,V2,...",
              help="the values of one axis, mild to harsh (repeatable; adds the axis if --axes leaves it out)")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True,
              help="chips (seeds 0..N-1) per point")
@click.option("--threshold", type=click.FloatRange(min=0), default=0.02, show_default=True,
              help="an axis breaks at its mildest value whose accuracy is this far below the ideal block's")
@click.option("--extend", "more", type=click.IntRange(min=0), default=3, show_default=True,
              help="continue an axis that has not broken at the end of its grid by up to N harsher values")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="only the first N test samples")
@opt.engine("ngspice: also spot-check each breaking point on ngspice (native vs ngspice outputs)")
@click.option("--spot-samples", type=click.IntRange(min=1), default=20, show_default=True,
              help="test samples per ngspice spot check")
@opt.workdir
@opt.quiet
def command(**kw) -> int:
    return run(SimpleNamespace(**kw))


def _source(run_id: str, workdir):
    """(run holding the block, its config, model, x_test, y_test)."""
    from mlflow.tracking import MlflowClient

    from pipeline.flow import StageInputError, config_from_run, get_run, load_analog
    from pipeline.flow.inputs import test_set_of_run
    from pipeline.flow.lineage import finished_child, refs_of_run, tag
    run = get_run(run_id, what="robustness run")
    run_id = run.info.run_id    # the full id when a unique start was given
    if run.data.tags.get(tag("stage")) == "cotrain":
        run = finished_child(MlflowClient(), run, "train-analog")
        if run is None:
            raise StageInputError(f"co-training {run_id} has no finished train-analog run")
    refs = refs_of_run(run)
    if "analog" not in refs:
        raise StageInputError(f"run {run.info.run_id} ({run.data.tags.get(tag('stage'), 'not a mixsig stage')}) "
                              f"names no analog block")
    cfg = config_from_run(run.info.run_id)
    cache = Path(workdir) / "_cache"
    model = load_analog(refs["analog"].path(cache))
    x, y = test_set_of_run(run.info.run_id, cfg, refs, cache, "test the block on")
    return run, cfg, model, x, y


def run(args) -> int:
    import mlflow

    from pipeline.hardware import robustness as rb
    from pipeline.flow import experiment_name
    from pipeline.flow.lineage import tag
    from pipeline.runtime.tracking import recording_status, setup_mlflow
    grid = rb.parse_grid(args.grid, [a.strip() for a in args.axes.split(",") if a.strip()] if args.axes else None)
    setup_mlflow()
    args.workdir = opt.workdir_or_default(args.workdir)
    src, cfg, model, x, y = _source(args.run_id, args.workdir)
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
    grid = {a: v for a, v in grid.items() if rb.applies(a, model)} or grid
    say = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
    setup_mlflow(experiment_name(cfg))
    tags = {tag("stage"): "robustness", tag("status"): "running", tag("artifact.analog"): src.info.run_id,
            tag("source_run"): args.run_id}
    with mlflow.start_run(run_name=f"robustness {src.info.run_id[:8]}", tags=tags) as mrun:
        folder = Path(args.workdir) / mrun.info.run_id
        folder.mkdir(parents=True, exist_ok=True)
        mlflow.log_params({"seeds": args.seeds, "threshold": args.threshold, "test_samples": len(y),
                           "extend": args.more,
                           **{f"grid.{a}": ",".join(f"{v:g}" for v in vals) for a, vals in grid.items()}})
        say(f"robustness of block {src.info.run_id} on {len(y)} test samples, {args.seeds} chip(s) per point")
        try:
            with recording_status():
                ideal, results = rb.sweep(model, x, y, grid, seeds=args.seeds, threshold=args.threshold,
                                          progress=say, more=args.more)
                _log_sweep(ideal, results)
                spots = []
                if args.engine == "ngspice":
                    spots = _spot_checks(model, results, x[: args.spot_samples], y[: args.spot_samples], say)
                _report(ideal, results, spots, args, len(y), folder, src.info.run_id)
        finally:
            model.close()
    print(f"robustness run {mrun.info.run_id} (experiment {experiment_name(cfg)!r}); plot {folder / 'robustness.png'}")
    return 0


def _log_sweep(ideal: float, results) -> None:
    """Per axis: value, mean and spread of the accuracy at every step, and its breaking value."""
    import mlflow
    mlflow.log_metric("ideal_test_accuracy", ideal)
    for r in results:
        for i, (v, m, s) in enumerate(zip(r.values, r.mean, r.std)):
            mlflow.log_metrics({f"{r.axis}_value": float(v), f"{r.axis}_acc_mean": m, f"{r.axis}_acc_std": s},
                               step=i)
        if r.breaking is not None:
            mlflow.log_metric(f"{r.axis}_breaking_value", float(r.breaking))


def _spot_checks(model, results, x, y, say) -> list[dict]:
    """Native against ngspice at each axis's breaking point (or its harshest value), logged."""
    import mlflow

    from pipeline.hardware import robustness as rb
    spots = []
    for r in results:
        at = rb.spot_value(r)
        if at is None:
            continue
        spot = rb.spot_check(model, r.axis, at, x, y)
        spots.append(spot)
        mlflow.log_metrics({f"{r.axis}_spot_max_abs_dy": spot["max_abs_dy"],
                            f"{r.axis}_spot_acc_native": spot["acc_native"],
                            f"{r.axis}_spot_acc_ngspice": spot["acc_ngspice"]})
        say(f"ngspice spot check {r.axis}={at:g}: max |Δy| {spot['max_abs_dy']:.2e} V, "
            f"accuracy native {spot['acc_native']:.3f} / ngspice {spot['acc_ngspice']:.3f}")
    return spots


def _report(ideal: float, results, spots: list[dict], args, samples: int, folder: Path, block_run: str) -> None:
    """The table (printed and as text), the JSON and the plot, written to `folder` and logged."""
    import mlflow

    from pipeline.hardware import robustness as rb
    text = _format(rb.table(ideal, results))
    print(f"ideal block: {ideal:.4f}\n{text}")
    (folder / "robustness.txt").write_text(f"ideal block: {ideal:.4f}\n{text}\n")
    (folder / "robustness.json").write_text(json.dumps(
        {"ideal": ideal, "seeds": args.seeds, "threshold": args.threshold, "samples": int(samples),
         "axes": [vars(r) for r in results], "spot_checks": spots}, indent=2, default=float))
    rb.plot(ideal, results, folder / "robustness.png", title=f"robustness of block {block_run[:8]} (ideal {ideal:.3f})")
    for name in ("robustness.txt", "robustness.json", "robustness.png"):
        mlflow.log_artifact(str(folder / name))


def _format(rows) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines[:1] + ["  ".join("-" * w for w in widths)] + lines[1:])
