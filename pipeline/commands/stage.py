"""One `mixsig <stage>` command per registered stage, built from its declaration."""
from __future__ import annotations

import click

from pipeline.commands import options as opt


def _dest(flag: str) -> str:
    return "stage_" + flag.lstrip("-").replace("-", "_")


def stage_command(stage) -> click.Command:
    """The click command of a Stage: CONFIG, --from-run, --input, --round, the stage's own
    Option declarations (each sets one config key), and the common options."""
    from pipeline.flow.artifacts import KINDS

    def callback(config, from_run, inputs, round, workdir, overrides, quiet, **own):
        extra = [f"{o.key}={own[_dest(o.flag)]}" for o in stage.options if own.get(_dest(o.flag)) is not None]
        return run_stage_command(stage, config=config, from_runs=from_run, inputs=inputs, round=round,
                                 workdir=workdir, overrides=[*extra, *overrides], quiet=quiet)

    decorators = [
        opt.config_argument,
        click.option("--from-run", multiple=True, metavar="RUN_ID",
                     help="take inputs from this run and its upstream runs (repeatable; later ones win); "
                          "without CONFIG, its config too"),
        click.option("--input", "inputs", multiple=True, metavar="KIND=RUN_ID|FOLDER",
                     help=f"one input explicitly; kinds: {', '.join(KINDS)}"),
        click.option("--round", type=opt.RoundNumber(), default=None,
                     help="round tag (default: that of the --from-run, or 0)"),
        *[click.option(o.flag, _dest(o.flag), type=o.type, default=None, help=f"{o.help} (sets {o.key})")
          for o in stage.options],
        opt.common,
    ]
    return click.command(stage.name, help=_help(stage), short_help=stage.help)(opt.apply(*decorators)(callback))


def _help(stage) -> str:
    if stage.inputs is not None and stage.inputs.__doc__:
        ins = " ".join(stage.inputs.__doc__.split()).rstrip(".")
    else:
        ins = ", ".join(stage.needs) or "none"
    if stage.optional:
        ins += f"; optional: {', '.join(stage.optional)}"
    return (f"{stage.help[:1].upper()}{stage.help[1:]}.\n\nOne MLflow run. Inputs: {ins}. "
            f"Outputs: {', '.join(stage.produces) or 'metrics only'}.")


def run_stage_command(stage, *, config=None, from_runs=(), inputs=(), round=None, workdir=None, overrides=(),
                      quiet=False) -> int:
    from pathlib import Path

    from pipeline.flow import (PipelineError, config_from_run, experiment_name, get_run, load_config_with_overrides,
                               parse_input_items, resolve_inputs, run_stage)
    from pipeline.runtime.tracking import setup_mlflow
    setup_mlflow()
    for rid in from_runs if getattr(stage, "from_stages", ()) else ():
        kind = get_run(rid, what="--from-run run").data.tags.get("mixsig.stage", "non-mixsig")
        if kind not in stage.from_stages:
            raise PipelineError(f"{stage.name}: --from-run run {rid} is a {kind} run; {stage.name} takes "
                                f"--from-run of a {' or '.join(stage.from_stages)} run")
    if config:
        cfg = load_config_with_overrides(config, overrides)
    elif from_runs:
        cfg = config_from_run(get_run(from_runs[0], what="--from-run run").info.run_id, overrides)
    else:
        raise PipelineError(f"{stage.name}: give a config file or --from-run RUN_ID")
    refs = resolve_inputs(cfg, from_runs, parse_input_items(inputs))
    if round is None:
        round = stage.default_round(get_run(from_runs[-1])) if from_runs else 0
    outcome = run_stage(stage, cfg, refs, round=round, workdir=Path(opt.workdir_or_default(workdir)),
                        verbose=0 if quiet else 1)
    print(f"{stage.name} run {outcome.run_id} finished (experiment {experiment_name(cfg)!r})")
    for k, v in sorted(outcome.metrics.items()):
        if ("accuracy" in k or k.startswith(("chip_acc_mean", "e2e_acc"))
                or k in ("reached_fraction", "mean_shift", "stage_seconds")):
            print(f"  {k} = {v:.4g}")
    return 0
