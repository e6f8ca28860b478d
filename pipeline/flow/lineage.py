"""Lineage: stage runs in MLflow, the tags that link them, and where a stage's inputs come from.

Every stage run carries the tags

  mixsig.stage, mixsig.round, mixsig.step, mixsig.parent_run_id (in a co-training),
  mixsig.artifact.<kind> = id of the run holding that artifact (for its inputs and its
  outputs, so `--from-run` of a later stage finds everything upstream),
  mixsig.status = running | finished | failed | killed (finished only at the very end),

and its config as `config.yaml`, which is how a stage given only `--from-run` gets its config.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import os
from pathlib import Path

from pipeline.flow.artifacts import KINDS, ArtifactRef, StageInputError

from pipeline.runtime.tracking import STATUS_FINISHED, TAG, tag  # noqa: F401  (the lineage's vocabulary)

if TYPE_CHECKING:
    from pipeline.config import RootConfig


# ---------------------------------------------------------------------------------------
# configs of runs
# ---------------------------------------------------------------------------------------
def experiment_name(cfg: RootConfig) -> str:
    return cfg.mlflow.experiment or cfg.name


def dump_config(cfg: RootConfig, path: Path) -> Path:
    import yaml

    from pipeline.config import config_dict
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_dict(cfg), sort_keys=False))
    return path


def load_config_with_overrides(path, overrides=()) -> RootConfig:
    """The validated config of a YAML file with `--set a.b.c=value` overrides applied."""
    from pipeline.config import load_config
    return load_config(path, list(overrides or ()))


def config_from_run(run_id: str, overrides=()) -> RootConfig:
    """The validated config a run logged (config.yaml), with `--set` overrides applied."""
    import tempfile

    import mlflow
    try:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="config.yaml")
    except Exception as exc:
        raise StageInputError(f"run {run_id} has no config.yaml artifact ({type(exc).__name__})") from None
    if not overrides:
        return load_config_with_overrides(local)
    with tempfile.TemporaryDirectory() as tmp:   # the run's file stays as it was logged
        path = Path(tmp) / "config.yaml"
        path.write_text(Path(local).read_text())
        return load_config_with_overrides(path, overrides)


# ---------------------------------------------------------------------------------------
# run lookup and input resolution
# ---------------------------------------------------------------------------------------
MIN_PREFIX = 4     # shortest start of a run id taken for the id


def _by_prefix(client, prefix: str, what: str):
    """The one run whose id starts with `prefix` (`compare` prints 8 characters), or None."""
    import re

    from mlflow.entities import ViewType
    if not re.fullmatch(rf"[0-9a-f]{{{MIN_PREFIX},31}}", prefix):
        return None
    ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    runs = client.search_runs(ids, f"attributes.run_id LIKE '{prefix}%'", run_view_type=ViewType.ALL,
                              max_results=6) if ids else []
    if len(runs) > 1:
        raise StageInputError(f"{what} {prefix!r} is the start of {'more than 5' if len(runs) > 5 else len(runs)} "
                              f"run ids ({', '.join(r.info.run_id for r in runs[:5])}); give more of it")
    return runs[0] if runs else None


def get_run(run_id: str, experiment: str | None = None, what: str = "run"):
    """The MLflow run of an id or a unique start of one; StageInputError if it does not
    exist, is ambiguous, or is in another experiment."""
    from mlflow.tracking import MlflowClient
    client = MlflowClient()
    try:
        run = client.get_run(run_id)
    except Exception:
        run = _by_prefix(client, str(run_id).strip().lower(), what)
    if run is None:
        from pipeline.runtime.tracking import tracking_uri
        from pipeline.runtime.tracking import user_tracking_uri
        hint = "" if os.environ.get("MIXSIG_HOME") or user_tracking_uri() else \
            " (started outside its project folder? set MIXSIG_HOME to that folder)"
        if len(str(run_id).strip()) < 4:
            hint += " (a run id may be shortened to its first 4 or more characters, not fewer)"
        raise StageInputError(f"{what} {run_id!r} does not exist in the tracking store {tracking_uri()}{hint}") from None
    if experiment is not None:
        exp = client.get_experiment(run.info.experiment_id)
        if exp.name != experiment:
            raise StageInputError(f"{what} {run_id} belongs to experiment {exp.name!r}, not {experiment!r} "
                                  f"(set mlflow.experiment or use a run of this experiment)")
    return run


def finished_child(client, parent, stage: str):
    """The latest finished `stage` run under a co-training parent run, or None."""
    kids = client.search_runs(
        [parent.info.experiment_id], order_by=["attributes.start_time DESC"],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}' and tags.`{tag('stage')}` = '{stage}' "
                      f"and tags.`{tag('status')}` = 'finished'")
    return kids[0] if kids else None


def refs_of_run(run) -> dict:
    """kind → ArtifactRef of every artifact a run names in its lineage tags."""
    refs = {}
    for kind in KINDS:
        rid = run.data.tags.get(tag(f"artifact.{kind}"))
        if rid:
            refs[kind] = ArtifactRef(kind, run_id=rid)
    return refs


def parse_input_items(items) -> dict:
    """`--input KIND=REF` items → {kind: REF}."""
    out = {}
    for item in items or ():
        kind, sep, ref = item.partition("=")
        if not sep or kind not in KINDS or not ref:
            raise StageInputError(f"--input {item!r}: expected KIND=RUN_ID|FOLDER with KIND one of {', '.join(KINDS)}")
        out[kind] = ref
    return out


def resolve_inputs(cfg: RootConfig, from_runs=(), explicit: dict | None = None) -> dict:
    """kind → ArtifactRef from, in increasing priority: config `inputs.from_run`, each
    --from-run (later ones win), config `inputs.<kind>`, explicit --input kind=REF.
    A REF is an existing folder or a run id (whose lineage tag for that kind is followed)."""
    experiment = experiment_name(cfg)
    cfg_inputs = cfg.inputs.model_dump()
    refs: dict = {}
    runs = ([cfg_inputs["from_run"]] if cfg_inputs["from_run"] else []) + list(from_runs or ())
    for rid in runs:
        run = get_run(rid, experiment, what="--from-run run")
        found = refs_of_run(run)
        if not found:
            stage = run.data.tags.get(tag("stage"), "not a mixsig stage")
            raise StageInputError(f"--from-run run {rid} ({stage}) provides no stage outputs "
                                  f"(no {TAG}artifact.* tags; is it finished?)")
        refs.update(found)
    named = {k: v for k, v in cfg_inputs.items() if k in KINDS and v}
    named.update(explicit or {})
    for kind, ref in named.items():
        if kind not in KINDS:
            raise StageInputError(f"unknown input kind {kind!r}; kinds: {', '.join(KINDS)}")
        if os.path.exists(ref):
            refs[kind] = ArtifactRef(kind, local=Path(ref).resolve())
        elif os.sep in ref or ref.startswith("."):
            raise StageInputError(f"input {kind}: folder {ref} does not exist")
        else:
            run = get_run(ref, experiment, what=f"input {kind} run")
            found = refs_of_run(run)
            if kind not in found:
                raise StageInputError(f"input {kind}: run {ref} provides no {kind} "
                                      f"(it provides: {', '.join(found) or 'nothing'})")
            refs[kind] = found[kind]
    return refs
