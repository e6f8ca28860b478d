"""mixsig compare: a table of runs (key params, final metrics) read from MLflow, and a PNG
of test accuracy per round across co-trainings."""
from __future__ import annotations

import re
from types import SimpleNamespace

import click

HELP = ("table of runs with key params and final metrics from MLflow, plus a plot of accuracy per round; "
        "--recalibration: several recalibrations of one co-training in one plot instead")

DEFAULT_PARAMS = ["digital.encoder", "analog.hidden", "analog.gain", "training.beta", "training.optimizer.lr",
                  "training.epochs", "cotrain.rounds", "input_optimization.steps", "input_optimization.margin"]
DEFAULT_METRICS = ["digital_test_accuracy", "analog_first_test_accuracy", "end_to_end_test_accuracy",
                   "baseline_test_accuracy", "test_accuracy", "round_power_mean",
                   # scenarios of runs with a hardware section (pipeline/hardware/chip_metrics.py), shown when present
                   "e2e_acc_ideal", "e2e_acc_programmed", "e2e_acc_aware_programmed", "e2e_acc_insitu",
                   "e2e_acc_cotrained", "recovered_fraction", "recovered_fraction_insitu", "e2e_acc_programmed_tmax",
                   "e2e_acc_insitu_tmax", "e2e_acc_cotrained_tmax", "recovered_fraction_tmax", "rounds_gain_total",
                   "seconds_stages"]


def quote_filter(expr: str) -> str:
    """`params.analog.gain = '4'` → params.`analog.gain` = '4' (MLflow needs dotted keys quoted)."""
    def repl(m):
        prefix, key = m.group(1), m.group(2)
        return f"{prefix}.`{key}`" if "." in key else m.group(0)
    return re.sub(r"\b(params|param|metrics|metric|tags|tag)\.([A-Za-z0-9_][A-Za-z0-9_.\-/]*)", repl, expr or "")


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1e4 else f"{v:.3g}"
    return str(v)


@click.command("compare", help=HELP, short_help=HELP)
@click.option("--experiment", multiple=True, metavar="NAME", help="MLflow experiment name (repeatable)")
@click.option("--sweep", metavar="SWEEP_RUN_ID", help="the trials of this sweep (mixsig sweep) instead: its "
                                                      "experiment, its swept keys and metric as columns")
@click.option("--filter", "filter", default="", metavar="EXPR",
              help="MLflow search filter, e.g. \"params.analog.gain = '4.0'\" (dotted names are quoted for you)")
@click.option("--stage", default="cotrain",
              help="which runs: cotrain (parent runs, default), a stage name (e.g. train-analog), or all")
@click.option("--params", help=f"comma-separated params to show (default: {','.join(DEFAULT_PARAMS)})")
@click.option("--metrics", help=f"comma-separated metrics to show (default: {','.join(DEFAULT_METRICS)})")
@click.option("--max-runs", type=int, default=100, show_default=True, help="at most this many runs, newest first")
@click.option("--output", default="compare.png", show_default=True, help="PNG of accuracy per round")
@click.option("--csv", help="also write the table as CSV to this file")
@click.option("--time-output", default="compare_time.png", show_default=True,
              help="PNG of accuracy against the time after programming (runs with a hardware section)")
@click.option("--recalibration", multiple=True, type=click.Path(exists=True), metavar="PATH",
              help="a `mixsig recalibrate` run's recalibration.json or folder (repeatable): plot these "
                   "recalibrations of one co-training together to --output (without recalibration from the first) "
                   "instead of reading runs from MLflow")
@click.option("--title", default="accuracy over time, with and without recalibration", show_default=True,
              help="the --recalibration plot's title")
def command(**kw) -> int:
    return run(SimpleNamespace(**kw))


def run(args) -> int:
    from mlflow.tracking import MlflowClient

    from pipeline.flow import PipelineError
    from pipeline.runtime.tracking import setup_mlflow
    if getattr(args, "recalibration", ()):
        return _recalibration_plot(args)
    if not args.experiment and not getattr(args, "sweep", None):
        raise PipelineError("compare: give --experiment NAME (or --sweep SWEEP_RUN_ID)")
    setup_mlflow()
    client = MlflowClient()
    if getattr(args, "sweep", None):
        _sweep_args(client, args)
    exps = _experiments(client, args.experiment)
    runs, flt = _runs(client, exps, args)
    if not runs:
        _no_runs(client, exps, args, flt)
        return 0
    params = args.params.split(",") if args.params else DEFAULT_PARAMS
    metrics = args.metrics.split(",") if args.metrics else DEFAULT_METRICS
    unknown = [m for m in metrics if not any(m in r.data.metrics for r in runs)] \
        if args.metrics and not getattr(args, "lenient_metrics", False) else []
    if unknown:
        raise PipelineError(f"compare --metrics: {', '.join(unknown)} logged by none of the {len(runs)} runs")
    metrics = [m for m in metrics if any(m in r.data.metrics for r in runs)] or metrics
    params = [p for p in params if any(p in r.data.params for r in runs)] or params
    _table(runs, params, metrics, args.csv)
    _round_plot(client, runs, args.output)
    _time_plot(client, runs, args.time_output)
    return 0


def _experiments(client, names) -> list:
    from pipeline.flow import PipelineError
    from pipeline.runtime.tracking import tracking_uri
    exps = []
    for name in names:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            known = ", ".join(e.name for e in client.search_experiments()) or "none"
            raise PipelineError(f"experiment {name!r} does not exist in {tracking_uri()} (experiments: {known})")
        exps.append(exp)
    return exps


def _runs(client, exps, args) -> tuple[list, str]:
    """The runs the options select, newest first, and the filter string sent to MLflow."""
    from pipeline.flow import PipelineError
    parts = [quote_filter(args.filter)] if args.filter.strip() else []
    if getattr(args, "sweep", None):
        parts.append(f"tags.`mixsig.sweep` = '{args.sweep}'")
    elif args.stage != "all":
        parts.append(f"tags.`mixsig.stage` = '{args.stage}'")
    flt = " and ".join(p for p in parts if p)
    try:
        runs = client.search_runs([e.experiment_id for e in exps], filter_string=flt, max_results=args.max_runs,
                                  order_by=["attributes.start_time DESC"])
    except Exception as exc:
        raise PipelineError(f"bad --filter {args.filter!r} (sent as {flt!r}): {str(exc).splitlines()[0]}") from None
    return runs, flt


def _no_runs(client, exps, args, flt: str) -> None:
    print(f"no runs match (experiments {', '.join(args.experiment)}, filter {flt!r})")
    if args.stage != "all":     # the common miss: only stage runs were made (e.g. train-analog alone)
        other = client.search_runs([e.experiment_id for e in exps], max_results=200)
        stages = sorted({r.data.tags.get("mixsig.stage") for r in other} - {None, args.stage})
        if stages:
            print(f"the experiment has runs of other stages: {', '.join(stages)}; "
                  f"try --stage {stages[0]} (or --stage all)")


def _table(runs, params: list, metrics: list, csv_path: str | None) -> None:
    import csv
    header = ["run", "name", "stage", "status"] + params + metrics
    rows = []
    for r in runs:
        tags = r.data.tags
        rows.append([r.info.run_id[:8], r.info.run_name or "", tags.get("mixsig.stage", ""),
                     tags.get("mixsig.status", r.info.status.lower())]
                    + [r.data.params.get(p) for p in params] + [r.data.metrics.get(m) for m in metrics])
    cells = [header] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for i, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    if csv_path:
        with open(csv_path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["run_id"] + header[1:])
            for r, row in zip(runs, rows):
                w.writerow([r.info.run_id] + row[1:])
        print(f"table written to {csv_path}")


def _round_plot(client, runs, output: str) -> None:
    from pipeline.cotraining.summary import ROUND_METRICS
    from pipeline.flow.metric_series import by_step
    from pipeline.flow.plots import accuracy_per_round
    series = {}
    for r in runs:
        s = list(by_step(client, r.info.run_id, ROUND_METRICS["analog block (end to end)"]).items())
        if s:
            series[f"{r.info.run_name} ({r.info.run_id[:8]})"] = s
    if series:
        accuracy_per_round(series, output, title="end-to-end test accuracy per round")
        print(f"accuracy per round of {len(series)} run(s) plotted to {output}")
    else:
        print("no per-round accuracies among these runs (only co-training parent runs have them); no plot")


def _sweep_args(client, args) -> None:
    """--sweep ID: its experiment, its trial runs, its swept keys and metric first."""
    import json

    from pipeline.flow import StageInputError, get_run
    run = get_run(args.sweep, what="--sweep run")
    if run.data.tags.get("mixsig.stage") != "sweep":
        raise StageInputError(f"--sweep run {args.sweep} is a {run.data.tags.get('mixsig.stage', 'non-mixsig')} "
                              f"run, not a sweep (mixsig sweep) run")
    args.sweep = run.info.run_id
    args.experiment = (client.get_experiment(run.info.experiment_id).name,)
    settings = json.loads(run.data.tags.get("mixsig.sweep_settings", "{}"))
    keys = [k[len("space."):] for k in sorted(run.data.params) if k.startswith("space.")]
    if settings.get("seeds"):
        keys.append("seed")
    if not args.params:
        args.params = ",".join(keys + [p for p in DEFAULT_PARAMS if p not in keys])
    if not args.metrics:
        metric = settings.get("metric", "val_accuracy")
        args.metrics = ",".join([metric] + [m for m in ("test_accuracy", "end_to_end_test_accuracy",
                                                        "analog_test_accuracy") if m != metric])
        args.lenient_metrics = True


def _time_plot(client, runs, output) -> None:
    """Each run's scenarios (programmed, co-trained, ...) against the time after programming."""
    from pipeline.hardware.chip_metrics import SCENARIO_LABELS
    from pipeline.flow.metric_series import series as by_step
    from pipeline.flow.plots import accuracy_vs_time
    series = {}
    for r in runs:
        times = by_step(client, r.info.run_id, "scenario_time_s") if "scenario_time_s" in r.data.metrics \
            else []
        for name in SCENARIO_LABELS:
            if name == "ideal" or not times:
                continue
            mean = by_step(client, r.info.run_id, f"scenario_acc_{name}")
            if len(mean) == len(times):
                std = by_step(client, r.info.run_id, f"scenario_std_{name}")
                series[f"{r.info.run_name} ({r.info.run_id[:8]}): {name}"] = (times, mean,
                                                                              std if len(std) == len(mean) else None)
    if series:
        accuracy_vs_time(series, output, title="end-to-end test accuracy after programming, across runs")
        print(f"accuracy against time after programming of {len(series)} scenario(s) plotted to {output}")


def _recalibration_plot(args) -> int:
    from pipeline.flow.plots import accuracy_vs_time
    from pipeline.hardware.recalibration import read_table, tables_series
    series = tables_series([read_table(p) for p in args.recalibration])
    print(accuracy_vs_time(series, args.output, title=args.title))
    return 0
