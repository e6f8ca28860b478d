"""mixsig sweep: a search over config keys on Ray Tune, each trial a nested MLflow run (pipeline.sweep)."""
from __future__ import annotations

import click

from pipeline.commands import options as opt

HELP = ("search config keys on Ray Tune (grid, random or optuna; seeds as a dimension), each trial a co-training "
        "or a stage range nested under one sweep MLflow run; early stopping (ASHA, median) on the analog "
        "block's per-epoch metric; results table and best config; embedded Ray by default, a cluster by "
        "--address; --resume continues a killed sweep")


@click.command("sweep", help=HELP, short_help="search config keys on Ray Tune: trials as nested MLflow runs, "
                                              "early stopping, best config; --resume continues")
@opt.config_argument
@click.option("--space", "space", metavar="SPACE.yaml", help="the search space (see docs/scaleout.md)")
@click.option("--resume", metavar="SWEEP_RUN_ID", help="continue a killed or interrupted sweep (its run id); "
                                                       "finished trials are not run again")
@click.option("--address", metavar="HOST:PORT", help="Ray cluster to run on [default: $RAY_ADDRESS, else an "
                                                     "embedded Ray on this machine]")
@click.option("--concurrency", type=int, help="trials at once [default: the cluster's CPUs / --cpus-per-trial]")
@click.option("--cpus-per-trial", type=click.FloatRange(min=0.01), help="CPUs reserved per trial [default: 1]")
@click.option("--num-cpus", type=click.IntRange(min=1), help="embedded Ray only: CPUs it may use "
                                                             "[default: this machine's]")
@click.option("--searcher", help="override the space file's searcher: grid, random or optuna")
@click.option("--samples", type=click.IntRange(min=1), help="override the space file's samples")
@click.option("--storage", metavar="PATH|URI", help="where Ray Tune keeps the sweep's state (shared by every node "
                                                   "of a cluster) [default: sweeps/ in the working folder]")
@click.option("--run-name", help="name of the sweep run [default: sweep <config name>]")
@opt.common
def command(config, space, resume, address, concurrency, cpus_per_trial, num_cpus, searcher, samples, storage,
            run_name, workdir, overrides, quiet) -> int:
    try:
        return _run(config, space, resume, address, concurrency, cpus_per_trial, num_cpus, searcher, samples, storage,
                    run_name, workdir, overrides, quiet)
    finally:
        import sys
        if "ray" in sys.modules:
            import ray
            if ray.is_initialized():
                ray.shutdown()     # an embedded Ray stops with it; a cluster is only left


def _run(config, space, resume, address, concurrency, cpus_per_trial, num_cpus, searcher, samples, storage,
         run_name, workdir, overrides, quiet) -> int:
    from pipeline.flow import PipelineError
    verbose = 0 if quiet else 1
    if resume:
        if config or space or overrides or searcher or samples or concurrency or cpus_per_trial or storage:
            raise PipelineError("sweep --resume SWEEP_RUN_ID takes the config, space and settings of that sweep; "
                                "give only --address, --num-cpus, --workdir or -q with it")
        from pipeline.sweep.driver import resume as resume_sweep
        resume_sweep(resume, address=address, num_cpus=num_cpus, workdir=workdir, verbose=verbose)
        return 0
    if not config or not space:
        raise PipelineError("sweep: give a config file and --space SPACE.yaml (or --resume SWEEP_RUN_ID)")
    from pipeline.sweep.driver import start
    start(config, space, overrides, address=address, concurrency=concurrency, cpus_per_trial=cpus_per_trial,
          num_cpus=num_cpus, workdir=opt.workdir_or_default(workdir), storage=storage, run_name=run_name,
          searcher=searcher, samples=samples, verbose=verbose)
    return 0
