"""mixsig recalibrate RUN_ID --time T: the encoder (or the chips in situ, or both) adapted to the
chips read T seconds after programming (pipeline/hardware/recalibration.py), as a new MLflow run
nested under RUN_ID, with the accuracy over time with and without it."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import click

from pipeline.commands import options as opt

HELP = "retrain the encoder (or fine-tune the chips in situ, or both) against the chips read at time T after programming"


@click.command("recalibrate", help=HELP + ". RUN_ID: a co-training with a hardware: section (or a stage run naming "
               "its chips, or an earlier recalibration); the recalibration is a new MLflow run nested under it, "
               "logging the accuracy at every evaluation time with and without recalibration, and a plot. "
               "Times: seconds or a number with s, min, h, d, y (3600, 1h, 1d, 1y).", short_help=HELP)
@click.argument("run_id")
@click.option("--time", "time_", required=True, metavar="T",
              help="when to recalibrate: time after programming (>= 0, and not before the chips' last programming)")
@click.option("--mode", type=click.Choice(["encoder", "chip", "both"]), default="encoder", show_default=True,
              help="encoder: retrain the encoder through the loop chip read at T; chip: in-situ EP fine-tuning of "
                   "every chip at T; both: the chips, then the encoder")
@click.option("--eval-times", default=None, metavar="T1,T2,...",
              help="read times to evaluate at [default: T and the run's hardware.times after it]")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="retraining epochs (encoder: digital.retrain_epochs; chip: hardware.finetune_epochs or 1)")
@click.option("--chip", "loop", type=click.IntRange(min=0), default=None,
              help="the chip the encoder is retrained through [default: hardware.loop_chip]")
@opt.workdir
@opt.quiet
def command(**kw) -> int:
    return run(SimpleNamespace(**kw))


def _times(args, cfg) -> tuple[float, list[float]]:
    from pipeline.hardware.settings import eval_times
    from pipeline.hardware.recalibration import parse_time
    t = parse_time(args.time_, "--time")
    if args.eval_times:
        times = [parse_time(x, "--eval-times") for x in args.eval_times.split(",") if x.strip()]
    else:
        times = [x for x in eval_times(cfg) if x >= t] or [t]
    return t, times


def run(args) -> int:
    import mlflow

    from pipeline.hardware import recalibration as rc
    from pipeline.hardware.recalibration import parse_time
    from pipeline.flow import experiment_name
    from pipeline.flow.lineage import STATUS_FINISHED, dump_config, tag
    from pipeline.runtime.tracking import setup_mlflow
    rc.check_time(parse_time(args.time_, "--time"), [])    # a bad or negative --time fails before any lookup
    setup_mlflow()
    workdir = Path(opt.workdir_or_default(args.workdir))
    src = rc.source(args.run_id, workdir)
    t, times = _times(args, src.cfg)
    say = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
    setup_mlflow(experiment_name(src.cfg))
    tags = {tag("stage"): "recalibrate", tag("status"): "running", tag("source_run"): src.run_id,
            **{tag(f"artifact.{k}"): r.run_id for k, r in src.refs.items()
               if r.run_id and k in ("analog", "chips", "encoder")}}    # embeddings of the old encoder stay behind
    with mlflow.start_run(run_name=f"recalibrate {args.mode} at {t:g} s", nested=True, parent_run_id=src.run_id,
                          tags=tags) as mrun:
        folder = workdir / mrun.info.run_id
        folder.mkdir(parents=True, exist_ok=True)
        try:
            mlflow.log_params({"time_s": t, "mode": args.mode, "eval_times": ",".join(f"{x:g}" for x in times),
                               "epochs": args.epochs or "", "loop_chip": "" if args.loop is None else args.loop})
            mlflow.log_artifact(str(dump_config(src.cfg, folder / "config.yaml")))
            res, enc, chips = rc.recalibrate(src, t, args.mode, times, loop=args.loop, epochs=args.epochs, say=say)
            try:
                _log(res, folder)
                enc.save(folder / "encoder")
                mlflow.log_artifacts(str(folder / "encoder"), artifact_path="encoder")
                if args.mode != "encoder":
                    for i, chip in enumerate(chips):      # saved as they are after T (no read before T)
                        chip.save(folder / "chips" / f"chip{i}")
                    mlflow.log_artifacts(str(folder / "chips"), artifact_path="chips")
            finally:
                for chip in chips:
                    chip.close()
            outputs = ["encoder"] + (["chips"] if args.mode != "encoder" else [])
            mlflow.set_tags({**{tag(f"artifact.{k}"): mrun.info.run_id for k in outputs}, tag("status"): STATUS_FINISHED})
        except BaseException:
            mlflow.set_tag(tag("status"), "failed")
            raise
    _print(res, mrun.info.run_id, folder)
    return 0


def _log(res, folder: Path) -> None:
    import mlflow
    import numpy as np

    from pipeline.hardware.chip_metrics import spread
    from pipeline.hardware import recalibration as rc
    for i, x in enumerate(res.times):
        m = {"time_s": x, "acc_without_mean": res.before[i].mean(), "acc_without_std": spread(res.before[i]),
             f"acc_without_chip{res.loop}": res.before[i, res.loop]}
        if x >= res.t:
            m.update({"acc_with_mean": res.after[i].mean(), "acc_with_std": spread(res.after[i]),
                      f"acc_with_chip{res.loop}": res.after[i, res.loop]})
        mlflow.log_metrics({k: float(v) for k, v in m.items()}, step=i)
    k = res.times.index(res.t)
    summary = {"acc_without_at_t": res.before[k].mean(), "acc_with_at_t": res.after[k].mean(),
               "gain_at_t": res.after[k].mean() - res.before[k].mean(),
               "loop_chip_acc_without_at_t": res.before[k, res.loop], "loop_chip_acc_with_at_t": res.after[k, res.loop],
               "acc_without_tmax": res.before[-1].mean(), "acc_with_tmax": res.after[-1].mean()}
    mlflow.log_metrics({k2: float(v) for k2, v in summary.items()})
    for key, values in res.history.items():
        for step, v in enumerate(values):
            if np.isfinite(v):
                mlflow.log_metric(f"recal_{key}", float(v), step=step + 1)
    table = {"times": res.times, "t": res.t, "mode": res.mode, "loop_chip": res.loop,
             "without": res.before.tolist(), "with": np.where(np.isnan(res.after), None, res.after).tolist()}
    (folder / "recalibration.json").write_text(json.dumps(table, indent=2))
    rc.plot(res, folder / "plots" / "recalibration.png",
            title=f"recalibrated at {res.t:g} s ({res.mode}), {res.before.shape[1]} chip(s)")
    mlflow.log_artifact(str(folder / "recalibration.json"))
    mlflow.log_artifacts(str(folder / "plots"), artifact_path="plots")


def _print(res, run_id: str, folder: Path) -> None:
    print(f"{'time (s)':>12}  {'without':>8}  {'with':>8}   (mean over {res.before.shape[1]} chip(s))")
    for i, x in enumerate(res.times):
        w = f"{res.after[i].mean():.4f}" if x >= res.t else "-"
        print(f"{x:>12g}  {res.before[i].mean():>8.4f}  {w:>8}")
    print(f"recalibrate run {run_id}; plot {folder / 'plots' / 'recalibration.png'}")
