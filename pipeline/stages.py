"""The co-training stages and the machinery that runs each as an MLflow run.

A stage consumes *artifacts* of earlier stages and produces new ones. Kinds:

  encoder     folder `encoder/` (digital encoder, `save`/`load_encoder`)
  embeddings  folder `embeddings/` with embeddings.npz (x_/y_ train, val, test; volts)
  analog      folder `analog_model/` (AnalogModel.save: model.json, arrays.npz)
  targets     folder `targets/` with targets.npz (target embeddings of the training set)

Every stage run logs the whole config (flattened) as params and `config.yaml`, its
metrics, its outputs as artifacts, and tags:

  mixsig.stage, mixsig.round, mixsig.step, mixsig.parent_run_id (in a co-training),
  mixsig.artifact.<kind> = id of the run holding that artifact (for its inputs and its
  outputs — the lineage, so `--from-run` of a later stage finds everything upstream),
  mixsig.status = running | finished | failed (set to finished only at the very end).

Inputs are resolved, downloaded and checked (presence, run existence, experiment,
embedding widths) before a run is created or any work is done; problems raise
StageInputError naming the input.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np


class PipelineError(Exception):
    """A pipeline request that cannot be carried out (printed by the CLI as `error: ...`)."""


class StageInputError(PipelineError):
    """A stage input is missing, unknown, in another experiment, or does not fit."""


KINDS = {
    "encoder": ("encoder", "the digital encoder (train-digital or retrain-digital)"),
    "embeddings": ("embeddings", "the embeddings .npz (embed)"),
    "analog": ("analog_model", "the analog model folder (train-analog)"),
    "targets": ("targets", "the target embeddings .npz (optimize-inputs)"),
}
TAG = "mixsig."
STATUS_FINISHED = "finished"


# ---------------------------------------------------------------------------------------
# artifacts
# ---------------------------------------------------------------------------------------
@dataclass
class ArtifactRef:
    """One artifact: where it lives in MLflow (run_id) and/or on disk (local)."""
    kind: str
    run_id: str | None = None
    local: Path | None = None

    @property
    def artifact_path(self) -> str:
        return KINDS[self.kind][0]

    def describe(self) -> str:
        return f"run {self.run_id}" if self.run_id else f"folder {self.local}"

    def path(self, cache: Path | None = None) -> Path:
        """The local folder, downloaded from the run's artifacts if it is not on disk."""
        if self.local is not None and self.local.exists():
            return self.local
        if self.run_id is None:
            raise StageInputError(f"{self.kind} input folder {self.local} does not exist")
        import mlflow
        dst = self.local.parent if self.local is not None else Path(cache or "runs/_cache") / self.run_id
        dst.mkdir(parents=True, exist_ok=True)
        try:
            got = mlflow.artifacts.download_artifacts(run_id=self.run_id, artifact_path=self.artifact_path,
                                                      dst_path=str(dst))
        except Exception as exc:
            raise StageInputError(f"run {self.run_id} has no '{self.artifact_path}' artifact for input "
                                  f"'{self.kind}' ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
        self.local = Path(got)
        return self.local


def save_npz(folder: Path, name: str, **arrays) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    np.savez(path, **arrays)
    return path


def load_embeddings(folder: Path) -> dict:
    file = Path(folder) / "embeddings.npz"
    if not file.is_file():
        raise StageInputError(f"embeddings input {folder} has no embeddings.npz")
    with np.load(file) as z:
        return {k: (z[k].astype(np.float64) if k.startswith("x_") else z[k]) for k in z.files}


def load_targets(folder: Path) -> dict:
    file = Path(folder) / "targets.npz"
    if not file.is_file():
        raise StageInputError(f"targets input {folder} has no targets.npz")
    with np.load(file) as z:
        return {k: z[k] for k in z.files}


def _input_width(kind: str, folder: Path) -> int | None:
    """Embedding width an input carries or expects (cheap: no Keras, no solves)."""
    if kind == "encoder":
        from digital.base import read_manifest
        try:
            return int(read_manifest(folder)["params"]["embedding_dim"])
        except Exception as exc:
            raise StageInputError(f"encoder input {folder} is not a saved encoder ({exc})") from None
    if kind in ("embeddings", "targets"):
        file = Path(folder) / f"{kind}.npz"
        if not file.is_file():
            raise StageInputError(f"{kind} input {folder} has no {file.name}")
        with np.load(file) as z:
            key = "x_train" if kind == "embeddings" else "targets"
            return int(z[key].shape[1])
    if kind == "analog":
        return int(load_analog(folder).circuit.n_features)
    return None


def load_analog(folder: Path):
    from analog.model import AnalogModel
    try:
        return AnalogModel.load(folder)
    except FileNotFoundError:
        raise StageInputError(f"analog input {folder} holds no saved analog model (model.json)") from None


# ---------------------------------------------------------------------------------------
# config helpers
# ---------------------------------------------------------------------------------------
def load_config_with_overrides(path, overrides=()) -> dict:
    """load_config plus `--set a.b.c=value` overrides (values parsed as YAML)."""
    import yaml

    from pipeline.config import ConfigError, load_config, validate_config
    if not overrides:
        return load_config(path)
    load_config(path)   # the file's own errors first
    raw = yaml.safe_load(Path(path).read_text()) or {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set analog.gain=2.0")
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part, {}), dict):
                raise ConfigError(f"--set {item!r}: {part} is not a section")
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(value)
    try:
        return validate_config(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path} with --set overrides: {exc}") from None


def experiment_name(cfg: dict) -> str:
    return (cfg.get("mlflow") or {}).get("experiment") or cfg["name"]


def dump_config(cfg: dict, path: Path) -> Path:
    import yaml
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def config_from_run(run_id: str) -> dict:
    import mlflow
    import yaml

    from pipeline.config import validate_config
    try:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="config.yaml")
    except Exception as exc:
        raise StageInputError(f"run {run_id} has no config.yaml artifact ({type(exc).__name__})") from None
    return validate_config(yaml.safe_load(Path(local).read_text()))


# ---------------------------------------------------------------------------------------
# run lookup and input resolution
# ---------------------------------------------------------------------------------------
def get_run(run_id: str, experiment: str | None = None, what: str = "run"):
    """The MLflow run, or StageInputError if it does not exist or is in another experiment."""
    from mlflow.tracking import MlflowClient
    client = MlflowClient()
    try:
        run = client.get_run(run_id)
    except Exception:
        from pipeline.tracking import tracking_uri
        raise StageInputError(f"{what} {run_id!r} does not exist in the tracking store {tracking_uri()}") from None
    if experiment is not None:
        exp = client.get_experiment(run.info.experiment_id)
        if exp.name != experiment:
            raise StageInputError(f"{what} {run_id} belongs to experiment {exp.name!r}, not {experiment!r} "
                                  f"(set mlflow.experiment or use a run of this experiment)")
    return run


def _refs_of_run(run) -> dict:
    refs = {}
    for kind in KINDS:
        rid = run.data.tags.get(f"{TAG}artifact.{kind}")
        if rid:
            refs[kind] = ArtifactRef(kind, run_id=rid)
    return refs


def resolve_inputs(cfg: dict, from_runs=(), explicit: dict | None = None) -> dict:
    """kind → ArtifactRef from, in increasing priority: config `inputs.from_run`, each
    --from-run (later ones win), config `inputs.<kind>`, explicit --input kind=REF.
    A REF is an existing folder or a run id (whose lineage tag for that kind is followed)."""
    experiment = experiment_name(cfg)
    cfg_inputs = cfg.get("inputs") or {}
    refs: dict = {}
    runs = ([cfg_inputs["from_run"]] if cfg_inputs.get("from_run") else []) + list(from_runs or ())
    for rid in runs:
        run = get_run(rid, experiment, what="--from-run run")
        found = _refs_of_run(run)
        if not found:
            stage = run.data.tags.get(f"{TAG}stage", "not a mixsig stage")
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
            found = _refs_of_run(run)
            if kind not in found:
                raise StageInputError(f"input {kind}: run {ref} provides no {kind} "
                                      f"(it provides: {', '.join(found) or 'nothing'})")
            refs[kind] = found[kind]
    return refs


# ---------------------------------------------------------------------------------------
# data (cached per process: a co-training loads its data set once)
# ---------------------------------------------------------------------------------------
_DATA_CACHE: dict = {}


def dataset(cfg: dict):
    from pipeline.data import load_dataset
    key = (json.dumps(cfg["data"], sort_keys=True), cfg.get("seed", 0))
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()
        _DATA_CACHE[key] = load_dataset(cfg["data"], seed=cfg.get("seed", 0))
    return _DATA_CACHE[key]


def is_image_data(cfg: dict) -> bool:
    return cfg["data"]["dataset"] == "fashion_mnist"


# ---------------------------------------------------------------------------------------
# the stage context and runner
# ---------------------------------------------------------------------------------------
@dataclass
class StageContext:
    cfg: dict
    stage: str
    round: int
    folder: Path                    # local output folder of this stage run
    inputs: dict                    # kind → ArtifactRef
    run_id: str = ""
    parent_run_id: str | None = None
    verbose: int = 1
    cache: Path = Path("runs/_cache")
    outputs: dict = field(default_factory=dict)    # kind → local folder
    extra_artifacts: list = field(default_factory=list)   # (local path, artifact dir)
    metrics: dict = field(default_factory=dict)

    def input(self, kind: str) -> Path:
        return self.inputs[kind].path(self.cache)

    def has(self, kind: str) -> bool:
        return kind in self.inputs

    def output(self, kind: str) -> Path:
        path = self.folder / KINDS[kind][0]
        path.mkdir(parents=True, exist_ok=True)
        self.outputs[kind] = path
        return path

    def artifact(self, path, artifact_dir: str | None = None) -> Path:
        self.extra_artifacts.append((Path(path), artifact_dir))
        return Path(path)

    @property
    def data(self):
        return dataset(self.cfg)

    @property
    def keras_verbose(self) -> int:
        if not self.verbose:
            return 0
        return 1 if sys.stdout.isatty() else 2

    def log(self, metrics: dict, step: int | None = None, final: bool = True) -> None:
        """Log metrics to this stage's run; final ones are also kept for metrics.json."""
        import mlflow
        clean = {k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(float(v))}
        if clean:
            mlflow.log_metrics(clean, step=step)
        if final:
            self.metrics.update(clean)

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

    def say(self, text: str) -> None:
        if self.verbose:
            print(f"[{self.stage} r{self.round}] {text}", flush=True)


@dataclass
class StageSpec:
    name: str
    needs: tuple
    optional: tuple
    produces: tuple
    func: Callable
    help: str


STAGES: dict[str, StageSpec] = {}


def stage(name, needs=(), optional=(), produces=(), help=""):
    def deco(func):
        STAGES[name] = StageSpec(name, tuple(needs), tuple(optional), tuple(produces), func, help)
        return func
    return deco


def required_inputs(spec: StageSpec, cfg: dict) -> tuple:
    needs = list(spec.needs)
    if spec.name == "train-analog" and is_image_data(cfg):
        needs.append("embeddings")
    if spec.name in ("evaluate", "retrain-digital") and is_image_data(cfg) and "encoder" not in needs:
        needs.append("encoder")
    if spec.name == "evaluate" and not is_image_data(cfg):
        needs = [k for k in needs if k != "embeddings"]
    return tuple(needs)


def check_inputs(spec: StageSpec, cfg: dict, inputs: dict, cache: Path) -> dict:
    """Presence, download and mutual fit of a stage's inputs, before any work."""
    if spec.name == "train-digital" and is_image_data(cfg):
        from pipeline.build import check_configured_encoder
        try:
            check_configured_encoder(cfg)
        except ValueError as exc:
            raise StageInputError(f"{spec.name}: {exc}") from None
    missing = [k for k in required_inputs(spec, cfg) if k not in inputs]
    if missing:
        k = missing[0]
        raise StageInputError(
            f"{spec.name}: missing input '{k}' ({KINDS[k][1]}); pass --from-run RUN_ID of a run that has it, "
            f"--input {k}=RUN_ID|FOLDER, or set inputs.{k} in the config")
    used = {k: v for k, v in inputs.items() if k in spec.needs + spec.optional or k in required_inputs(spec, cfg)}
    widths = {}
    for kind, ref in used.items():
        ref.path(cache)
        widths[kind] = (_input_width(kind, ref.local), ref)
    order = ("encoder", "analog", "embeddings", "targets")
    items = sorted(widths.items(), key=lambda kv: order.index(kv[0]))
    for (k1, (w1, r1)), (k2, (w2, r2)) in zip(items, items[1:]):
        if w1 is not None and w2 is not None and w1 != w2:
            raise StageInputError(
                f"{spec.name}: embedding width mismatch: {_width_text(k1, w1, r1)} but {_width_text(k2, w2, r2)}")
    if is_image_data(cfg):
        # the config's width is logged as a param and sizes new encoders: it must be the inputs' width
        dim = cfg["digital"]["embedding_dim"]
        for kind, (w, ref) in items:
            if w is not None and w != dim:
                raise StageInputError(
                    f"{spec.name}: digital.embedding_dim is {dim} in the config but {_width_text(kind, w, ref)}; "
                    f"set digital.embedding_dim: {w} (or --set digital.embedding_dim={w}) or use inputs {dim} wide")
    if is_image_data(cfg) and "encoder" in used:
        from digital.base import read_manifest
        params = read_manifest(used["encoder"].local)["params"]
        amp = cfg["analog"]["input_amplitude"]
        lo, hi = float(params.get("v_low", -amp)), float(params.get("v_high", amp))
        if lo < -amp - 1e-12 or hi > amp + 1e-12:
            raise StageInputError(f"{spec.name}: the encoder from {used['encoder'].describe()} outputs "
                                  f"[{lo:g}, {hi:g}] V but the analog block takes inputs within "
                                  f"±analog.input_amplitude = ±{amp:g} V")
    return used


def _width_text(kind, width, ref) -> str:
    what = {"encoder": "the encoder from {r} has embedding width {w}",
            "embeddings": "the embeddings from {r} are {w} wide",
            "targets": "the target embeddings from {r} are {w} wide",
            "analog": "the analog block from {r} takes {w} input voltages"}[kind]
    return what.format(r=ref.describe(), w=width)


@dataclass
class StageOutcome:
    run_id: str
    outputs: dict      # kind → ArtifactRef
    metrics: dict


def run_stage(name: str, cfg: dict, inputs: dict, *, round: int = 0, folder: Path | None = None,
              workdir: Path = Path("runs"), parent_run_id: str | None = None, step: int | None = None,
              verbose: int = 1, checked: bool = False) -> StageOutcome:
    """Run one stage as an MLflow run (nested under parent_run_id if given)."""
    import mlflow

    from pipeline.config import flatten
    from pipeline.tracking import setup_mlflow
    spec = STAGES[name]
    cache = Path(workdir) / "_cache"
    used = inputs if checked else check_inputs(spec, cfg, inputs, cache)
    setup_mlflow(experiment_name(cfg))
    tags = {f"{TAG}stage": name, f"{TAG}round": str(round), f"{TAG}status": "running"}
    if step is not None:
        tags[f"{TAG}step"] = str(step)
    if parent_run_id:
        tags[f"{TAG}parent_run_id"] = parent_run_id
    for kind, ref in {**inputs, **used}.items():   # lineage: everything upstream, used or carried along
        if ref.run_id:
            tags[f"{TAG}artifact.{kind}"] = ref.run_id
        elif kind in used:
            tags[f"{TAG}input.{kind}"] = str(ref.local)
    t0 = time.perf_counter()
    with mlflow.start_run(run_name=f"{name} r{round}", nested=parent_run_id is not None,
                          parent_run_id=parent_run_id, tags=tags) as run:
        run_id = run.info.run_id
        out_folder = Path(folder) if folder is not None else Path(workdir) / run_id
        out_folder.mkdir(parents=True, exist_ok=True)
        ctx = StageContext(cfg, name, round, out_folder, used, run_id, parent_run_id, verbose, cache)
        try:
            mlflow.log_params({k: ("" if v is None else v) for k, v in flatten(cfg).items()})
            mlflow.log_artifact(str(dump_config(cfg, out_folder / "config.yaml")))
            ctx.say(f"run {run_id} → {out_folder}")
            spec.func(ctx)
            seconds = time.perf_counter() - t0
            ctx.log({"stage_seconds": seconds})
            (out_folder / "metrics.json").write_text(json.dumps(ctx.metrics, indent=2))
            mlflow.log_artifact(str(out_folder / "metrics.json"))
            for kind, path in ctx.outputs.items():
                mlflow.log_artifacts(str(path), artifact_path=KINDS[kind][0])
            for path, adir in ctx.extra_artifacts:
                if path.is_dir():
                    mlflow.log_artifacts(str(path), artifact_path=adir)
                elif path.exists():
                    mlflow.log_artifact(str(path), artifact_path=adir)
            mlflow.set_tags({**{f"{TAG}artifact.{k}": run_id for k in ctx.outputs}, f"{TAG}status": STATUS_FINISHED})
            ctx.say(f"finished in {seconds:.1f} s")
        except BaseException:
            mlflow.set_tag(f"{TAG}status", "failed")
            raise
    outputs = {**inputs,
               **{k: ArtifactRef(k, run_id=run_id, local=p) for k, p in ctx.outputs.items()}}
    return StageOutcome(run_id, outputs, ctx.metrics)


# ---------------------------------------------------------------------------------------
# analog helpers
# ---------------------------------------------------------------------------------------
def analog_scores(model, x, y, batch_size: int = 4096) -> dict:
    """Accuracy, loss, mean dissipated power and non-converged count of the block on (x, y)."""
    outs, power, ok_all = [], [], []
    for lo in range(0, len(x), batch_size):
        sol = model.solve(x[lo: lo + batch_size])
        outs.append(model.circuit.outputs(sol.v))
        power.append(sol.power)
        ok_all.append(sol.converged)
    out = np.concatenate(outs) if outs else np.zeros((0, model.circuit.n_outputs))
    power = np.concatenate(power) if power else np.zeros(0)
    ok = np.concatenate(ok_all) if ok_all else np.zeros(0, bool)
    ok &= np.all(np.isfinite(out), axis=1)
    cost, _ = model.loss(np.where(ok[:, None], out, 0.0), y)
    return {"accuracy": float((out[ok].argmax(1) == y[ok]).sum() / max(1, len(y))),
            "loss": float(cost[ok].mean()) if ok.any() else float("nan"),
            "power_mean": float(power[ok].mean()) if ok.any() else float("nan"),
            "nonconverged": int((~ok).sum())}


class _MlflowEpochLogger:
    """AnalogModel callback: every epoch's logs as MLflow metrics (step = epoch)."""

    def __init__(self, ctx: StageContext):
        self.ctx = ctx

    def on_train_begin(self, model): ...

    def on_epoch_end(self, epoch, logs, model):
        self.ctx.log(logs, step=epoch + 1, final=False)

    def on_train_end(self, model): ...


def _input_box(cfg: dict, emb: dict | None) -> tuple[float, float]:
    """Voltage range inputs may take: the encoder's [v_low, v_high] within ±input_amplitude."""
    amp = float(cfg["analog"]["input_amplitude"])
    if emb is not None and "v_low" in emb:
        lo, hi = float(emb["v_low"]), float(emb["v_high"])
    elif is_image_data(cfg):
        lo, hi = cfg["digital"]["v_low"], cfg["digital"]["v_high"]
    else:
        lo, hi = -amp, amp
    return max(lo, -amp), min(hi, amp)


def _analog_data(ctx: StageContext) -> dict:
    """x_/y_ train, val, test for the analog block: embeddings, or tabular volts."""
    if ctx.has("embeddings"):
        return load_embeddings(ctx.input("embeddings"))
    ds = ctx.data
    if ds.x_train.ndim > 2:
        raise StageInputError(f"{ctx.stage}: {ds.name} images need embeddings; pass --from-run of an embed run")
    from pipeline.data import tabular_to_volts
    xtr, xva, xte = tabular_to_volts(ds.x_train, ds.x_val, ds.x_test, amplitude=ctx.cfg["analog"]["input_amplitude"])
    return {"x_train": xtr, "y_train": ds.y_train, "x_val": xva, "y_val": ds.y_val, "x_test": xte, "y_test": ds.y_test,
            "n_classes": np.array(ds.n_classes)}


def _log_history(ctx: StageContext, history: dict, prefix: str) -> None:
    for key, values in (history or {}).items():
        for i, v in enumerate(values):
            ctx.log({f"{prefix}{key}": v}, step=i + 1, final=False)


# ---------------------------------------------------------------------------------------
# the stages
# ---------------------------------------------------------------------------------------
@stage("train-digital", produces=("encoder",), help="train the digital encoder and its classification head")
def train_digital(ctx: StageContext) -> None:
    from pipeline import build
    ds = ctx.data
    if ds.x_train.ndim != 3:
        raise PipelineError(f"train-digital needs images; data.dataset={ds.name} is tabular")
    d = ctx.cfg["digital"]
    enc = build.encoder(ctx.cfg)
    ctx.say(f"{type(enc).__name__} → {enc.embedding_dim} volts in [{enc.v_low}, {enc.v_high}], "
            f"{len(ds.x_train)} images, {d['epochs']} epochs")
    enc.fit(ds.x_train, ds.y_train, epochs=d["epochs"], batch_size=d["batch_size"], verbose=ctx.keras_verbose,
            validation_data=(ds.x_val, ds.y_val))
    _log_history(ctx, getattr(enc, "history_", {}), "digital_")
    if getattr(enc, "history_", None):
        from pipeline import plots
        plots.learning_curves(enc.history_, ctx.folder / "plots" / "digital_learning_curves.png",
                              title=f"digital encoder ({type(enc).__name__})")
        ctx.artifact(ctx.folder / "plots", "plots")
    acc_val = enc.evaluate(ds.x_val, ds.y_val)
    acc_test = enc.evaluate(ds.x_test, ds.y_test)
    ctx.log({"digital_val_accuracy": acc_val, "digital_test_accuracy": acc_test})
    ctx.log_parent({"round_digital_test_accuracy": acc_test})
    ctx.say(f"digital-only test accuracy {acc_test:.4f}")
    enc.save(ctx.output("encoder"))


@stage("embed", needs=("encoder",), produces=("embeddings",), help="embed train/val/test images with the encoder")
def embed(ctx: StageContext) -> None:
    from digital import check_encoder, load_encoder
    ds = ctx.data
    enc = load_encoder(ctx.input("encoder"))
    check_encoder(enc, ds.x_val[:32])
    t0 = time.perf_counter()
    arrays = {}
    from tqdm.auto import tqdm
    parts = (("train", ds.x_train, ds.y_train), ("val", ds.x_val, ds.y_val), ("test", ds.x_test, ds.y_test))
    with tqdm(total=sum(len(p[1]) for p in parts), desc="embed", unit="image", disable=not ctx.verbose,
              dynamic_ncols=True) as bar:
        for split, x, y in parts:
            chunks = []
            for lo in range(0, len(x), 8192):   # a multiple of the Keras encoders' batch: fewer retraces
                chunks.append(enc.embed(x[lo: lo + 8192]))
                bar.update(len(chunks[-1]))
            # float32 on disk (µV resolution; halves the artifact), float64 in memory
            arrays[f"x_{split}"] = (np.concatenate(chunks) if chunks else np.zeros((0, enc.embedding_dim))
                                    ).astype(np.float32)
            arrays[f"y_{split}"] = np.asarray(y, dtype=np.int64)
    seconds = time.perf_counter() - t0
    e = arrays["x_train"]
    span = enc.v_high - enc.v_low
    saturated = float(np.mean((e <= enc.v_low + 0.01 * span) | (e >= enc.v_high - 0.01 * span)))
    save_npz(ctx.output("embeddings"), "embeddings.npz", **arrays, v_low=np.array(enc.v_low),
             v_high=np.array(enc.v_high), n_classes=np.array(ds.n_classes))
    ctx.log({"embed_seconds": seconds, "embedding_mean": float(e.mean()), "embedding_std": float(e.std()),
             "embedding_saturated_fraction": saturated, "embedding_width": e.shape[1]})
    ctx.say(f"{sum(len(a) for k, a in arrays.items() if k.startswith('x_'))} embeddings in {seconds:.1f} s")


@stage("train-analog", optional=("embeddings", "analog"), produces=("analog",),
       help="train the analog block by Equilibrium Propagation (on embeddings, or tabular data)")
def train_analog(ctx: StageContext) -> None:
    from pipeline import build, plots
    from pipeline.analog_config import compile_from_config
    cfg, t = ctx.cfg, ctx.cfg["training"]
    data = _analog_data(ctx)
    n_classes = int(data.get("n_classes", np.array(int(data["y_train"].max()) + 1)))
    if ctx.has("analog"):
        model = load_analog(ctx.input("analog"))
        epochs = cfg["cotrain"]["analog_epochs"] or t["epochs"]
        compile_from_config(model, cfg, epochs)   # this run's β, loss, optimiser, engine
        ctx.say(f"continuing the analog block from epoch {model.epoch} for {epochs} epochs")
    else:
        model = build.analog_model(cfg, data["x_train"].shape[1], n_classes)
        epochs = t["epochs"]
        ctx.say(f"new analog block {data['x_train'].shape[1]}→{cfg['analog']['hidden']}→{n_classes}, {epochs} epochs")
    try:
        model.fit(data["x_train"], data["y_train"], epochs=epochs, batch_size=t["batch_size"],
                  validation_data=(data["x_val"], data["y_val"]), callbacks=[_MlflowEpochLogger(ctx)],
                  verbose=1 if ctx.verbose else 0, seed=cfg.get("seed", 0))
        last = {k: v[-1] for k, v in model.history.history.items() if v}
        ctx.log({"train_accuracy": last.get("accuracy"), "train_loss": last.get("loss"),
                 "epochs_total": model.epoch})
        scores = {}
        for split in ("val", "test"):
            s = analog_scores(model, data[f"x_{split}"], data[f"y_{split}"])
            scores[split] = s
            if split == "test":   # validation metrics are already logged per epoch (val_*)
                ctx.log({f"{split}_{k}": v for k, v in s.items()})
        ctx.say(f"test accuracy {scores['test']['accuracy']:.4f}, val {scores['val']['accuracy']:.4f}, "
                f"power {scores['test']['power_mean']:.3g} W")
        ctx.log_parent({"round_analog_test_accuracy": scores["test"]["accuracy"],
                        "round_analog_val_accuracy": scores["val"]["accuracy"],
                        "round_analog_train_accuracy": last.get("accuracy"),
                        "round_power_mean": scores["test"]["power_mean"]})
        model.save(ctx.output("analog"))
        plots_dir = ctx.folder / "plots"
        plots.learning_curves(model.history.history, plots_dir / "learning_curves.png",
                              title=f"analog block ({ctx.stage} r{ctx.round})", epochs=np.array(model.history.epoch) + 1)
        if model.history.histograms:
            plots.histograms(model.history.histograms[-1], plots_dir / "histograms.png",
                             title=f"conductances and hidden voltages after epoch {model.epoch}")
        ctx.artifact(plots_dir, "plots")
        try:
            netlist = model.to_netlist(data["x_test"][:1])
            path = ctx.folder / "netlist" / "analog_block.cir"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(netlist)
            ctx.artifact(path.parent, "netlist")
        except Exception as exc:   # the netlist writer is optional for training
            ctx.say(f"warning: no SPICE netlist ({type(exc).__name__}: {exc})")
    finally:
        model.close()


@stage("optimize-inputs", needs=("analog", "embeddings"), produces=("targets",),
       help="gradient descent on the block's input voltages → target embeddings")
def optimize_inputs_stage(ctx: StageContext) -> None:
    from pipeline import plots
    from pipeline.input_optimization import optimize_inputs
    io = ctx.cfg["input_optimization"]
    data = load_embeddings(ctx.input("embeddings"))
    model = load_analog(ctx.input("analog"))
    lo, hi = _input_box(ctx.cfg, data)
    ctx.say(f"{len(data['x_train'])} samples, ≤{io['steps']} steps of {io['lr']} ({io['update']}), "
            f"margin {io['margin']} V, box [{lo:g}, {hi:g}] V")
    try:
        res = optimize_inputs(model, data["x_train"], data["y_train"], lr=io["lr"], steps=io["steps"],
                              margin=io["margin"], v_low=lo, v_high=hi, update=io["update"],
                              batch_size=io["batch_size"], method=io["method"], progress=bool(ctx.verbose))
    finally:
        model.close()
    m = res.metrics()
    ctx.log(m)
    ctx.log_parent({f"round_inputopt_{k}": m[k] for k in ("reached_fraction", "initially_reached_fraction",
                                                           "mean_shift", "max_shift", "seconds")})
    ctx.say(f"reached {m['reached_fraction']:.3f} (initially {m['initially_reached_fraction']:.3f}), "
            f"mean shift {m['mean_shift']:.3g} V, max {m['max_shift']:.3g} V, {m['seconds']:.1f} s")
    save_npz(ctx.output("targets"), "targets.npz", targets=res.targets, y_train=data["y_train"], reached=res.reached,
             margin_before=res.margin_before, margin_after=res.margin_after, shift=res.shifts)
    plots.value_histograms({"shift per sample (L2, V)": res.shifts, "margin before (V)": res.margin_before,
                            "margin after (V)": res.margin_after}, ctx.folder / "plots" / "input_optimization.png",
                           title="input optimisation")
    ctx.artifact(ctx.folder / "plots", "plots")


@stage("retrain-digital", needs=("encoder", "targets"), optional=("analog",), produces=("encoder",),
       help="retrain the encoder (from its current weights) to output the target embeddings")
def retrain_digital(ctx: StageContext) -> None:
    from digital import load_encoder
    d = ctx.cfg["digital"]
    ds = ctx.data
    tg = load_targets(ctx.input("targets"))
    if len(tg["targets"]) != len(ds.x_train) or not np.array_equal(tg["y_train"], ds.y_train):
        raise StageInputError(f"retrain-digital: the target embeddings ({len(tg['targets'])} rows) do not match the "
                              f"training set of this config ({len(ds.x_train)} images); use the same data settings")
    enc = load_encoder(ctx.input("encoder"))
    ctx.say(f"fitting {type(enc).__name__} to {len(ds.x_train)} target embeddings, {d['retrain_epochs']} epochs, "
            f"target weight {d['target_weight']}, class weight {d['class_weight']}")
    labels = ds.y_train if d["class_weight"] > 0 else None
    enc.fit_targets(ds.x_train, tg["targets"], labels, epochs=d["retrain_epochs"], target_weight=d["target_weight"],
                    class_weight=d["class_weight"], verbose=ctx.keras_verbose)
    hist = getattr(enc, "history_", {})
    _log_history(ctx, hist, "retrain_")
    acc = enc.evaluate(ds.x_test, ds.y_test)
    ctx.log({"digital_test_accuracy": acc, "target_mse": (hist.get("target_mse") or [None])[-1]})
    ctx.log_parent({"round_digital_test_accuracy": acc}, step=ctx.round + 1)
    msg = f"digital-only test accuracy {acc:.4f}"
    if ctx.has("analog"):
        model = load_analog(ctx.input("analog"))
        try:
            s = analog_scores(model, enc.embed(ds.x_test), ds.y_test)
        finally:
            model.close()
        ctx.log({"end_to_end_test_accuracy": s["accuracy"]})
        ctx.log_parent({"round_retrained_end_to_end_test_accuracy": s["accuracy"]})
        msg += f"; end to end with the round's analog block {s['accuracy']:.4f}"
    ctx.say(msg)
    enc.save(ctx.output("encoder"))


@stage("evaluate", needs=("analog", "embeddings"), optional=("encoder",),
       help="test accuracies: digital-only, analog on embeddings, end to end, Keras backprop baseline")
def evaluate(ctx: StageContext) -> None:
    cfg = ctx.cfg
    data = _analog_data(ctx)
    model = load_analog(ctx.input("analog"))
    results = {}
    try:
        s = analog_scores(model, data["x_test"], data["y_test"])
        results.update(analog_test_accuracy=s["accuracy"], analog_test_loss=s["loss"], power_mean=s["power_mean"],
                       nonconverged=s["nonconverged"])
        if ctx.has("encoder"):
            from digital import load_encoder
            ds = ctx.data
            enc = load_encoder(ctx.input("encoder"))
            results["digital_test_accuracy"] = enc.evaluate(ds.x_test, ds.y_test)
            e2e = analog_scores(model, enc.embed(ds.x_test), ds.y_test)
            results["end_to_end_test_accuracy"] = e2e["accuracy"]
    finally:
        model.close()
    if cfg["baseline"]["enabled"]:
        results.update(software_baseline(cfg, data, verbose=ctx.keras_verbose))
    ctx.log(results)
    ctx.log_parent({f"final_{k}": v for k, v in results.items()}, step=ctx.round)
    ctx.say(", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in results.items()))


def software_baseline(cfg: dict, data: dict, verbose: int = 0) -> dict:
    """The same dense network (inputs → analog.hidden → classes) trained by backprop in
    Keras on the same embeddings: how close EP on the circuit gets."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    b = cfg["baseline"]
    keras.utils.set_random_seed(cfg.get("seed", 0))
    n_classes = int(data.get("n_classes", np.array(int(data["y_train"].max()) + 1)))
    inputs = keras.Input(shape=(data["x_train"].shape[1],))
    h = inputs
    for units in cfg["analog"]["hidden"]:
        h = keras.layers.Dense(units, activation="tanh")(h)
    out = keras.layers.Dense(n_classes)(h)
    net = keras.Model(inputs, out, name="software_baseline")
    net.compile(optimizer=keras.optimizers.Adam(b["lr"]),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    t0 = time.perf_counter()
    net.fit(data["x_train"], data["y_train"], epochs=b["epochs"], batch_size=b["batch_size"],
            validation_data=(data["x_val"], data["y_val"]), verbose=verbose)
    _, acc = net.evaluate(data["x_test"], data["y_test"], verbose=0)
    return {"baseline_test_accuracy": float(acc), "baseline_seconds": time.perf_counter() - t0}


# ---------------------------------------------------------------------------------------
# stage commands (shared by pipeline/commands/<stage>.py)
# ---------------------------------------------------------------------------------------
def add_common_arguments(parser) -> None:
    parser.add_argument("--workdir", default="runs", help="local working folder (default ./runs)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set analog.gain=2.0 (repeatable)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _round_number(text: str) -> int:
    import argparse
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; rounds count from 0")
    return value


def add_stage_arguments(parser, name: str) -> None:
    parser.add_argument("config", nargs="?", help="experiment YAML (default: the config of the first --from-run)")
    parser.add_argument("--from-run", action="append", default=[], metavar="RUN_ID",
                        help="take inputs from this run and its upstream runs (repeatable; later ones win)")
    parser.add_argument("--input", action="append", default=[], metavar="KIND=RUN_ID|FOLDER",
                        help=f"one input explicitly; kinds: {', '.join(KINDS)}")
    parser.add_argument("--round", type=_round_number, default=None,
                        help="round tag (default: that of the --from-run, or 0)")
    add_common_arguments(parser)


def _parse_inputs(items) -> dict:
    out = {}
    for item in items or ():
        kind, sep, ref = item.partition("=")
        if not sep or kind not in KINDS or not ref:
            raise StageInputError(f"--input {item!r}: expected KIND=RUN_ID|FOLDER with KIND one of {', '.join(KINDS)}")
        out[kind] = ref
    return out


def run_stage_command(name: str, args) -> int:
    from pipeline.tracking import setup_mlflow
    setup_mlflow()
    if args.config:
        cfg = load_config_with_overrides(args.config, args.overrides)
    elif args.from_run:
        run = get_run(args.from_run[0], what="--from-run run")
        cfg = config_from_run(run.info.run_id)
        if args.overrides:
            import tempfile
            with tempfile.TemporaryDirectory() as tmp:
                cfg = load_config_with_overrides(dump_config(cfg, Path(tmp) / "config.yaml"), args.overrides)
    else:
        raise PipelineError(f"{name}: give a config file or --from-run RUN_ID")
    inputs = resolve_inputs(cfg, args.from_run, _parse_inputs(args.input))
    rnd = args.round
    if rnd is None:
        rnd = 0
        if args.from_run:
            rnd = int(get_run(args.from_run[-1]).data.tags.get(f"{TAG}round", 0))
            if name in ("embed", "train-analog") and get_run(args.from_run[-1]).data.tags.get(
                    f"{TAG}stage") == "retrain-digital":
                rnd += 1
    outcome = run_stage(name, cfg, inputs, round=rnd, workdir=Path(args.workdir), verbose=0 if args.quiet else 1)
    print(f"{name} run {outcome.run_id} finished (experiment {experiment_name(cfg)!r})")
    for k, v in sorted(outcome.metrics.items()):
        if "accuracy" in k or k in ("reached_fraction", "mean_shift", "stage_seconds"):
            print(f"  {k} = {v:.4g}")
    return 0
