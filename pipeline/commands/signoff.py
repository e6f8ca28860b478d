"""mixsig signoff RUN_ID: the whole test set through ngspice in Ray actors, compared with the
native engine (pipeline/hardware/signoff.py); logged as its own MLflow run (report JSON + markdown,
|ΔV| histogram, per-actor throughput) in the experiment of RUN_ID."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import click

from pipeline.commands import options as opt

HELP = "every test sample through ngspice in Ray actors, compared with the native engine; report to MLflow"


@click.command("signoff", help=HELP + ". RUN_ID: a train-analog run (its trained block), a program run with "
               "--chip K (that programmed chip), or a co-training parent (its last train-analog or program run). "
               "Test data: the embeddings of the run's lineage (images) or the config's tabular test split. "
               "Ray runs embedded (a private instance on this machine) unless --address or RAY_ADDRESS names a "
               "cluster. Exit code 0 when the sign-off passes (class agreement >= --min-agreement), 1 when it "
               "does not, 2 on bad input.", short_help=HELP)
@click.argument("run_id")
@click.option("--chip", type=click.IntRange(min=0), default=None,
              help="sign off programmed chip K of a program run (0-based) instead of the trained block")
@click.option("--time", "read_time", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="chip read time in seconds after programming (drift; one read-noise draw, seeded by the chip)")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="only the first N test samples")
@click.option("--actors", type=click.IntRange(min=1), default=None,
              help="Ray actors, one ngspice process each (default: the CPUs of this machine or of the cluster)")
@click.option("--address", default=None, metavar="HOST:PORT",
              help="a Ray cluster to run on (default: RAY_ADDRESS, else an embedded Ray on this machine)")
@click.option("--chunk", type=click.IntRange(min=1), default=None,
              help="samples per actor task (default: up to 128, at least 4 tasks per actor)")
@click.option("--min-agreement", type=click.FloatRange(0, 1), default=0.999, show_default=True,
              help="share of samples whose predicted class must agree for the sign-off to pass")
@opt.workdir
@opt.quiet
def command(**kw) -> int:
    return run(SimpleNamespace(**kw))


def run(args) -> int:
    import mlflow

    from pipeline.hardware import signoff as so
    from pipeline.flow import experiment_name
    from pipeline.flow.lineage import tag
    from pipeline.runtime.tracking import recording_status, setup_mlflow
    say = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
    setup_mlflow()
    if args.workdir is None:
        from pipeline.runtime.home import default_workdir
        args.workdir = default_workdir()
    src = so.load_source(args.run_id, args.workdir, chip=args.chip, read_time=args.read_time)
    x, y = (src.x[: args.limit], src.y[: args.limit]) if args.limit else (src.x, src.y)
    session = so.connect(args.address, args.actors)
    try:
        import ray
        cpus = int(ray.cluster_resources().get("CPU", 1))
        actors = args.actors or cpus
        if actors > cpus:
            raise so.SignoffError(f"--actors {actors}: the Ray cluster has {cpus} CPU(s)")
        where = "embedded Ray" if session.embedded else f"Ray at {session.address or 'the running instance'}"
        setup_mlflow(experiment_name(src.cfg))
        tags = {tag("stage"): "signoff", tag("status"): "running", tag("artifact.analog"): src.analog_run,
                tag("source_run"): src.run.info.run_id}
        with mlflow.start_run(run_name=f"signoff {src.run.info.run_id[:8]}"
                              + (f" chip{src.chip}" if src.chip is not None else ""), tags=tags) as mrun:
            folder = Path(args.workdir) / mrun.info.run_id
            folder.mkdir(parents=True, exist_ok=True)
            chunk = so.default_chunk(len(x), actors, args.chunk)
            mlflow.log_params({"samples": len(x), "actors": actors, "chunk": chunk, "chip": src.chip,
                               "read_time_s": args.read_time if src.chip is not None else None,
                               "ray": "embedded" if session.embedded else "cluster",
                               "min_agreement": args.min_agreement, "source_run": src.run.info.run_id})
            say(f"sign-off of the {src.what}: {len(x)} test samples on {actors} ngspice actor(s), {where}")
            with recording_status():
                res = so.run_ngspice(src.circuit, src.G, x, actors, chunk=chunk, progress=not args.quiet)
                v_nat, ok_nat = so.native_solve(src.circuit, src.G, x)
                rep = so.compare(src.circuit, x, y, v_nat, ok_nat, res, args.min_agreement)
                thr = so.throughput(res)
                _record(rep, thr, res, src, folder)
    finally:
        session.close()
        if src.model is not None and hasattr(src.model, "close"):
            src.model.close()
    verdict = "PASSED" if rep["passed"] else "FAILED"
    print(f"sign-off {verdict}: class agreement {rep['agreement'] * 100:.3f} % of {rep['samples']} samples "
          f"({rep['disagreements']} disagreeing{': ' + _listing(rep['disagreeing_samples']) if rep['disagreements'] else ''}), "
          f"max |ΔV| {rep['max_abs_dv']:.2e} V, ngspice non-convergences {rep['ngspice_nonconverged']}; "
          f"{thr['samples_per_s']:.1f} samples/s on {thr['actors']} actor(s) "
          f"({thr['samples_per_s_per_actor_mean']:.2f} per actor)")
    print(f"signoff run {mrun.info.run_id} (experiment {experiment_name(src.cfg)!r}); report {folder / 'signoff.md'}")
    return 0 if rep["passed"] else 1


def _record(rep: dict, thr: dict, res, src, folder: Path) -> None:
    """The sign-off's metrics (per actor too), its report and plots on the active run."""
    import mlflow

    from pipeline.hardware import signoff as so
    metrics = {k: rep[k] for k in ("max_abs_dv", "median_abs_dv", "max_abs_dy", "agreement",
                                   "disagreements", "ngspice_nonconverged", "native_nonconverged")}
    metrics.update({k: v for k, v in rep.items() if k.startswith("accuracy_")})
    metrics.update({k: thr[k] for k in ("samples_per_s", "samples_per_s_per_actor_mean",
                                        "samples_per_s_per_actor_min", "wall_seconds", "nodes",
                                        "load_seconds_max")})
    metrics["passed"] = float(rep["passed"])
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
    for k, a in enumerate(res.actors):
        mlflow.log_metrics({"actor_samples_per_s": a["samples_per_s"], "actor_samples": a["samples"],
                            "actor_load_seconds": a["load_seconds"]}, step=k)
    report = {k: v for k, v in rep.items() if not k.startswith("_")}
    report.update({"what": src.what, "source_run": src.run.info.run_id, "analog_run": src.analog_run,
                   "chip": src.chip, "throughput": thr, "actors": res.actors})
    (folder / "signoff.json").write_text(json.dumps(report, indent=2, default=float))
    (folder / "signoff.md").write_text(so.markdown(rep, thr, res.actors, src.what))
    files = [folder / "signoff.json", folder / "signoff.md"] + so.plots(rep, res.actors, folder, src.what)
    for f in files:
        mlflow.log_artifact(str(f))


def _listing(indices, at_most: int = 20) -> str:
    shown = ", ".join(str(i) for i in indices[:at_most])
    return shown + (f", … ({len(indices) - at_most} more)" if len(indices) > at_most else "")
