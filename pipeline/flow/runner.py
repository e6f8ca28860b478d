"""The stage contract, the registry of stages, and the runner that runs one as an MLflow run.

A stage is a module of the `pipeline.stages` package with a module-level `STAGE = Stage(...)`:
its name (the `mixsig` command), help, inputs (`needs`, `optional`, and `inputs(cfg)` for
rules that depend on the config), `produces` (and new artifact `kinds` it introduces),
command `options`, `body(ctx)`, and optionally its place in a co-training (`cotrain_after`
a stage, `cotrain_when` the config asks for it). The registry imports every module of the
package and collects their `STAGE`s, so adding a stage is adding one module; the CLI makes
one command per registered stage.

`run_stage` checks the inputs (before any run exists), opens the run with its lineage tags,
logs the config, calls the body with a StageContext, then logs metrics.json (nested under a
parent, also parent_metrics.json: what it logged on the parent), the outputs and extra
artifacts, and tags the run finished (or failed if the body raises; KILLED on
SIGINT/SIGTERM, see pipeline.runtime.interrupts). With a local artifact store (the default) a stage
writes its outputs straight into its run's artifact folder, linked from its local folder,
so each artifact is stored once.
"""
from __future__ import annotations

import importlib
import json
import pkgutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from pipeline.flow.artifacts import KINDS, ArtifactRef, artifact_dir
from pipeline.flow.inputs import check_inputs, dataset
from pipeline.runtime.interrupts import describe, end_active_run, is_interruption, raise_pending
from pipeline.flow.lineage import STATUS_FINISHED, dump_config, experiment_name, tag

PARENT_FILE = "parent_metrics.json"     # a nested step's metrics on its parent: [[key, step, value], ...]

if TYPE_CHECKING:
    from pipeline.config import RootConfig


@dataclass(frozen=True)
class Option:
    """A stage's own command option `flag VALUE`: it sets the config key `key` (so the
    value is validated by the schema and logged with the run's params)."""
    flag: str
    key: str
    help: str
    type: type = str


@dataclass(frozen=True)
class Stage:
    """One stage's declaration (see the module docstring)."""
    name: str
    help: str
    body: Callable
    needs: tuple = ()                 # input kinds always required
    optional: tuple = ()              # input kinds used when given
    produces: tuple = ()              # output kinds
    inputs: Callable | None = None    # cfg → required kinds (default: needs), for config-dependent rules
    precheck: Callable | None = None  # cfg → None, raises ValueError: checks before any work
    options: tuple = ()               # Option(...) declarations of its command
    new_round_after: tuple = ()       # `--from-run` of one of these stages starts the next round
    kinds: dict = field(default_factory=dict)   # artifact kinds it introduces: kind → (folder, description)
    cotrain_after: str | None = None  # in a co-training, run right after every step of this stage ...
    cotrain_when: Callable | None = None   # ... if cotrain_when(cfg) (default: always)
    from_stages: tuple = ()           # `--from-run` must name a run of one of these stages (default: any)

    def in_cotrain(self, cfg: RootConfig) -> bool:
        return self.cotrain_after is not None and (self.cotrain_when is None or bool(self.cotrain_when(cfg)))

    def required_inputs(self, cfg: RootConfig) -> tuple:
        return tuple(self.inputs(cfg)) if self.inputs is not None else tuple(self.needs)

    def default_round(self, from_run) -> int:
        """Round of a run continued from `from_run` (an MLflow run): the same, or the next
        one after a stage of `new_round_after`."""
        rnd = int(from_run.data.tags.get(tag("round"), 0))
        return rnd + 1 if from_run.data.tags.get(tag("stage")) in self.new_round_after else rnd


# ---------------------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------------------
STAGES: dict[str, Stage] = {}
_DISCOVERED: set = set()


def register(stage: Stage) -> Stage:
    if not isinstance(stage, Stage):
        raise TypeError(f"register() takes a Stage declaration, got {type(stage).__name__}")
    for kind, (folder, description) in stage.kinds.items():
        if KINDS.get(kind, (folder, description)) != (folder, description):
            raise ValueError(f"stage {stage.name}: artifact kind {kind!r} is already declared as {KINDS[kind]}")
        KINDS[kind] = (folder, description)
    STAGES[stage.name] = stage
    return stage


def discover(package: str = "pipeline.stages") -> dict[str, Stage]:
    """Import every module of `package` and register the `STAGE` each declares (once)."""
    if package not in _DISCOVERED:
        pkg = importlib.import_module(package)
        for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
            if info.name.startswith("_"):
                continue
            module = importlib.import_module(f"{package}.{info.name}")
            if isinstance(getattr(module, "STAGE", None), Stage):
                register(module.STAGE)
        _DISCOVERED.add(package)
    return STAGES


def get_stage(name: str) -> Stage:
    discover()
    return STAGES[name]


# ---------------------------------------------------------------------------------------
# the context a stage body works with
# ---------------------------------------------------------------------------------------
# Callables (ctx, metrics, step, final) → None, told every metric a stage logs after it is
# logged: a sweep's trial hands the analog block's per-epoch metrics to Ray Tune through one
# (pipeline.sweep.trial), so neither the stages nor analog/ know of Ray.
METRIC_LISTENERS: list = []


@dataclass
class StageContext:
    cfg: RootConfig
    stage: str
    round: int
    folder: Path                    # local output folder of this stage run
    inputs: dict                    # kind → ArtifactRef
    run_id: str = ""
    parent_run_id: str | None = None
    verbose: int = 1
    cache: Path = Path("runs/_cache")
    artifact_root: Path | None = None   # the run's artifact folder when the artifact store is local
    outputs: dict = field(default_factory=dict)    # kind → local folder
    extra_artifacts: list = field(default_factory=list)   # (local path, artifact dir)
    metrics: dict = field(default_factory=dict)    # final metrics (metrics.json)
    latest: dict = field(default_factory=dict)     # the last value of every metric logged
    to_parent: list = field(default_factory=list)  # (key, step, value) logged on the parent, in order

    def input(self, kind: str) -> Path:
        return self.inputs[kind].path(self.cache)

    def has(self, kind: str) -> bool:
        return kind in self.inputs

    def output(self, kind: str) -> Path:
        """The folder to write output `kind` into. With a local artifact store it lives in
        the run's artifact folder (stored once), reached through a link in the local folder."""
        path = self.folder / artifact_dir(kind)
        if self.artifact_root is not None and not path.exists():
            real = self.artifact_root / artifact_dir(kind)
            real.mkdir(parents=True, exist_ok=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.symlink_to(real, target_is_directory=True)
        path.mkdir(parents=True, exist_ok=True)
        self.outputs[kind] = path
        return path

    def artifact(self, path, artifact_dir: str | None = None) -> Path:
        self.extra_artifacts.append((Path(path), artifact_dir))
        return Path(path)

    @property
    def data(self):
        return dataset(self.cfg)

    # progress -----------------------------------------------------------------------
    @property
    def keras_verbose(self) -> int:
        from analog.progress import on_terminal
        if not self.verbose:
            return 0
        return 1 if on_terminal(sys.stdout) else 2     # off a terminal Keras prints one line per epoch

    def say(self, text: str) -> None:
        if self.verbose:
            print(f"[{self.stage} r{self.round}] {text}", flush=True)

    def log(self, metrics: dict, step: int | None = None, final: bool = True) -> None:
        """Log metrics to this stage's run; final ones are also kept for metrics.json."""
        import mlflow
        clean = {k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(float(v))}
        if clean:
            mlflow.log_metrics(clean, step=step)
        self.latest.update(clean)
        if final:
            self.metrics.update(clean)
        for listener in METRIC_LISTENERS:
            listener(self, clean, step, final)

    def log_history(self, history: dict, prefix: str) -> None:
        """A Keras-style history {name: [per epoch]} as metrics with step = epoch."""
        for key, values in (history or {}).items():
            for i, v in enumerate(values):
                self.log({f"{prefix}{key}": v}, step=i + 1, final=False)

    def log_parent(self, metrics: dict, step: int | None = None) -> None:
        """Per-round metrics on the co-training's parent run (step = round)."""
        if not self.parent_run_id:
            return
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient
        now = int(time.time() * 1000)
        step = self.round if step is None else step
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()
                 if v is not None and np.isfinite(float(v))]
        if items:
            MlflowClient().log_batch(self.parent_run_id, metrics=items)
            # kept for the loop's record, so the parent's summary needs no read of the store
            self.to_parent.extend((m.key, m.step, m.value) for m in items)


@dataclass
class StageOutcome:
    run_id: str
    outputs: dict      # kind → ArtifactRef
    metrics: dict      # final metrics
    latest: dict = field(default_factory=dict)    # the last value of every metric, as the run shows it
    to_parent: list = field(default_factory=list)  # (key, step, value) it logged on the parent, in order


# ---------------------------------------------------------------------------------------
# the runner
# ---------------------------------------------------------------------------------------
def _lineage_tags(name, round, step, parent_run_id, inputs, used) -> dict:
    tags = {tag("stage"): name, tag("round"): str(round), tag("status"): "running"}
    if step is not None:
        tags[tag("step")] = str(step)
    if parent_run_id:
        tags[tag("parent_run_id")] = parent_run_id
    for kind, ref in {**inputs, **used}.items():   # everything upstream, used or carried along
        if ref.run_id:
            tags[tag(f"artifact.{kind}")] = ref.run_id
        elif kind in used:
            tags[tag(f"input.{kind}")] = str(ref.local)
    return tags


def local_artifact_root(artifact_uri: str) -> Path | None:
    """The folder of a run's artifacts if the artifact store is this file system."""
    from urllib.parse import unquote, urlparse
    if artifact_uri.startswith("file:"):
        return Path(unquote(urlparse(artifact_uri).path))
    return Path(artifact_uri) if "://" not in artifact_uri and artifact_uri.startswith("/") else None


def _in_artifact_store(ctx: StageContext, path: Path) -> bool:
    if ctx.artifact_root is None or not path.is_symlink():
        return False
    return path.resolve().parent == ctx.artifact_root.resolve()


def _log_results(ctx: StageContext, out_folder: Path) -> None:
    import mlflow
    (out_folder / "metrics.json").write_text(json.dumps(ctx.metrics, indent=2))
    mlflow.log_artifact(str(out_folder / "metrics.json"))
    if ctx.parent_run_id:    # what a resumed co-training's summary takes for this step (pipeline.flow.record)
        (out_folder / PARENT_FILE).write_text(json.dumps(ctx.to_parent))
        mlflow.log_artifact(str(out_folder / PARENT_FILE))
    for kind, path in ctx.outputs.items():
        if not _in_artifact_store(ctx, path):   # already there when written through the link
            mlflow.log_artifacts(str(path), artifact_path=artifact_dir(kind))
    for path, adir in ctx.extra_artifacts:
        if path.is_dir():
            mlflow.log_artifacts(str(path), artifact_path=adir)
        elif path.exists():
            mlflow.log_artifact(str(path), artifact_path=adir)


def _flush(ctx: StageContext, out_folder: Path, exc: BaseException, seconds: float) -> None:
    """What an interrupted stage had finished: its metrics (metrics.json, with the reason)
    and the outputs it had written, logged to its run (which is not marked finished, so
    nothing downstream takes them as its inputs). Best effort: a second signal or a store
    error leaves the rest to `cotrain --resume`."""
    try:
        ctx.log({"stage_seconds_until_stopped": seconds})
        (out_folder / "interrupted.txt").write_text(describe(exc) + "\n")
        ctx.extra_artifacts.append((out_folder / "interrupted.txt", None))
        _log_results(ctx, out_folder)
    except Exception:
        pass


def run_stage(name: str | Stage, cfg: RootConfig, inputs: dict, *, round: int = 0, folder: Path | None = None,
              workdir: Path = Path("runs"), parent_run_id: str | None = None, step: int | None = None,
              verbose: int = 1, checked: bool = False) -> StageOutcome:
    """Run one stage as an MLflow run (nested under parent_run_id if given)."""
    import mlflow

    from pipeline.config import flatten
    from pipeline.runtime.tracking import setup_mlflow
    spec = name if isinstance(name, Stage) else get_stage(name)
    cache = Path(workdir) / "_cache"
    used = inputs if checked else check_inputs(spec, cfg, inputs, cache)
    setup_mlflow(experiment_name(cfg))
    tags = _lineage_tags(spec.name, round, step, parent_run_id, inputs, used)
    t0, c0 = time.perf_counter(), time.process_time()   # CPU: every thread of this process (TF's too)
    with mlflow.start_run(run_name=f"{spec.name} r{round}", nested=parent_run_id is not None,
                          parent_run_id=parent_run_id, tags=tags) as run:
        run_id = run.info.run_id
        out_folder = Path(folder) if folder is not None else Path(workdir) / run_id
        out_folder.mkdir(parents=True, exist_ok=True)
        ctx = StageContext(cfg, spec.name, round, out_folder, used, run_id, parent_run_id, verbose, cache,
                           local_artifact_root(run.info.artifact_uri))
        try:
            mlflow.log_params({k: ("" if v is None else v) for k, v in flatten(cfg).items()})
            mlflow.log_artifact(str(dump_config(cfg, out_folder / "config.yaml")))
            ctx.say(f"run {run_id} → {out_folder}")
            spec.body(ctx)
            raise_pending()        # a Ctrl-C swallowed by a finalizer during the body
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            ctx.log({"stage_seconds": seconds, "stage_seconds_cpu": cpu})
            _log_results(ctx, out_folder)
            mlflow.set_tags({**{tag(f"artifact.{k}"): run_id for k in ctx.outputs}, tag("status"): STATUS_FINISHED})
            ctx.say(f"finished in {seconds:.1f} s ({cpu:.1f} CPU s)")
        except BaseException as exc:
            if is_interruption(exc):
                _flush(ctx, out_folder, exc, time.perf_counter() - t0)
            end_active_run(exc, "failed")
            raise
    outputs = {**inputs, **{k: ArtifactRef(k, run_id=run_id, local=p) for k, p in ctx.outputs.items()}}
    return StageOutcome(run_id, outputs, ctx.metrics, {**ctx.latest, **ctx.metrics}, list(ctx.to_parent))
