"""mixsig cotrain: the whole co-training as one parent MLflow run (see pipeline.cotraining.run)."""
from __future__ import annotations

import click

from pipeline.commands import options as opt

HELP = ("train-digital → (embed → train-analog → optimize-inputs → retrain-digital) × rounds → embed → "
        "train-analog → evaluate, one nested MLflow run per stage and round; --resume continues")


@click.command("cotrain", help=HELP, short_help="the whole co-training: one parent MLflow run, one nested run per "
                                                "stage and round; --resume continues")
@opt.config_argument
@click.option("--resume", metavar="RUN_ID", help="continue an interrupted co-training (its parent run id)")
@click.option("--from-run", multiple=True, metavar="RUN_ID", help="start from the encoder of this run (skips train-digital)")
@click.option("--input", "inputs", multiple=True, metavar="encoder=RUN_ID",
              help="start from this run's encoder (skips train-digital)")
@click.option("--run-name", help="name of the parent run (default: the config's name)")
@click.option("--register", metavar="NAME", help="register the trained system's MLflow model (the parent run's "
                                                 "`model`) under NAME in the model registry")
@click.option("--force", is_flag=True, help="with --resume: the run's process on another host is known to be gone "
                                            "(a live process on this host is always refused)")
@click.option("--address", metavar="HOST:PORT", help="hardware.encoder_per_chip: the Ray cluster the chips' "
                                                       "co-trainings run on [default: $RAY_ADDRESS, else an "
                                                       "embedded Ray on this machine]")
@click.option("--num-cpus", type=click.IntRange(min=1), metavar="N", help="hardware.encoder_per_chip: CPUs of the embedded Ray "
                                                             "(chips co-trained at once) [default: this machine's]")
@opt.common
def command(config, resume, from_run, inputs, run_name, register, force, address, num_cpus, workdir, overrides,
            quiet) -> int:
    from pathlib import Path

    from pipeline.cotraining.run import run_cotrain
    from pipeline.flow import PipelineError, load_config_with_overrides, parse_input_items
    if resume and (config or overrides or from_run or inputs):
        raise PipelineError("cotrain --resume RUN_ID takes the config of that run; do not also give a config, "
                            "--set, --from-run or --input")
    if not resume and not config:
        raise PipelineError("cotrain: give a config file or --resume RUN_ID")
    if force and not resume:
        raise PipelineError("cotrain --force goes with --resume RUN_ID")
    from pipeline.runtime import liveness
    liveness.FORCE["other_host"] = bool(force)
    if resume:   # a unique start of the id is enough (compare prints 8 characters)
        from pipeline.flow import get_run
        from pipeline.runtime.tracking import setup_mlflow
        setup_mlflow()
        parent = get_run(resume, what="--resume run")
        resume = parent.info.run_id
        if workdir is None and parent.data.tags.get("mixsig.workdir"):   # its own local folder, from anywhere
            recorded = Path(parent.data.tags["mixsig.workdir"]).parent
            workdir = recorded if recorded.is_dir() else None
    cfg = None if resume else load_config_with_overrides(config, overrides)
    per_chip = cfg is not None and cfg.hardware is not None and cfg.hardware.encoder_per_chip
    if (address or num_cpus) and not per_chip:
        raise PipelineError("cotrain --address/--num-cpus go with hardware.encoder_per_chip: true (one encoder per "
                            "chip, co-trained as parallel Ray tasks)")
    if per_chip:
        from pipeline.cotraining.per_chip import run_per_chip
        if register:
            raise PipelineError("cotrain --register: with hardware.encoder_per_chip there is one system per chip; "
                                "register one chip's co-training run instead")
        run_per_chip(cfg, workdir=opt.workdir_or_default(workdir), from_runs=from_run,
                     explicit_inputs=parse_input_items(inputs), run_name=run_name, verbose=0 if quiet else 1,
                     address=address, num_cpus=num_cpus)
        return 0
    run_cotrain(cfg, resume=resume, workdir=opt.workdir_or_default(workdir), from_runs=from_run,
                explicit_inputs=parse_input_items(inputs), run_name=run_name, verbose=0 if quiet else 1,
                register=register)
    return 0
