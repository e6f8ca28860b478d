"""Recalibration over a chip's life: the digital side (or the chip, or both) adapted to the
chips as they read at time T after programming, and the accuracy over time with and
without it.

    src = source(run_id, workdir)                 # config, model, encoder, chips of a run
    result = recalibrate(src, t=86400.0, mode="encoder", eval_times=[3600, 86400, 3.15e7])

Modes:
  encoder  the encoder retrained through the loop chip read at T (EP input gradients of
           digital.through_loss, as retrain-digital with hardware.frozen does), the chips unchanged;
  chip     every chip fine-tuned in situ at T (analog.hardware.finetune at t = T: the pulses act
           on each device's conductance as it has drifted to T, and a pulsed device drifts
           again from T), the encoder unchanged;
  both     the chips first, then the encoder through the fine-tuned loop chip.

"Without recalibration" is the run's encoder on its chips at every evaluation time; "with" is
the recalibrated system, at the evaluation times from T on (before T it did not exist yet).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import InputError, OptionError

if TYPE_CHECKING:
    from pipeline.config import RootConfig

MODES = ("encoder", "chip", "both")
_UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "y": 3.15e7}


def parse_time(text, option: str = "--time") -> float:
    """Seconds from '3600', '1h', '30d', '1y' (s, min, h, d, y); OptionError naming `option`."""
    m = re.fullmatch(r"\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(s|min|h|d|y)?\s*", str(text))
    if m is None:
        raise OptionError(f"{option}={text}: not a time (seconds, or a number with s, min, h, d or y)")
    value = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if not np.isfinite(value):
        raise OptionError(f"{option}={text}: not a finite time")
    return value


def check_time(t: float, chips, option: str = "--time") -> float:
    """A recalibration time must lie at or after every chip's last programming."""
    if t < 0:
        raise OptionError(f"{option}={t:g}: before programming (times are seconds after programming, >= 0)")
    ref = max((programmed_at(c) for c in chips), default=0.0)
    if t < ref:
        raise OptionError(f"{option}={t:g}: before the chips' last programming at {ref:g} s "
                          f"(a recalibration acts on the chips as they are after it)")
    return t


def programmed_at(chip) -> float:
    """When the chip's devices were last written (seconds after the first programming)."""
    return float(getattr(chip, "programmed_at", 0.0))


# ---------------------------------------------------------------------------------------
# what a run provides
# ---------------------------------------------------------------------------------------
@dataclass
class Source:
    run_id: str
    cfg: RootConfig
    refs: dict                 # kind → ArtifactRef of the run's (or its last stage's) artifacts
    cache: Path
    stage: str = ""


def _last_with_chips(client, parent):
    """The latest finished stage of a co-training that names chips (it carries every
    upstream artifact in its lineage tags); recalibrations nested under it are not its stages."""
    from pipeline.flow.lineage import STATUS_FINISHED, refs_of_run, tag
    kids = client.search_runs([parent.info.experiment_id], order_by=["attributes.start_time DESC"],
                              filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}' and "
                                            f"tags.`{tag('status')}` = '{STATUS_FINISHED}'")
    return next((k for k in kids if "chips" in refs_of_run(k) and k.data.tags.get(tag("stage")) != "recalibrate"),
                None)       # its own stages: a recalibration nested under it is chosen by its run id


def source(run_id: str, workdir) -> Source:
    """The config and artifacts of RUN_ID: a co-training parent (its last finished stage
    naming chips), a stage run naming chips, or an earlier recalibration."""
    from mlflow.tracking import MlflowClient

    from pipeline.flow import StageInputError, config_from_run, get_run
    from pipeline.flow.lineage import refs_of_run, tag
    run = get_run(run_id, what="recalibrate run")
    stage = run.data.tags.get(tag("stage"), "not a mixsig stage")
    holder = _last_with_chips(MlflowClient(), run) if stage == "cotrain" else run
    refs = refs_of_run(holder) if holder is not None else {}
    if "chips" not in refs:
        raise StageInputError(f"RUN_ID={run.info.run_id} ({stage}) has no chips: recalibration needs a run "
                              f"with a hardware: section whose program stage finished (hardware.chips)")
    for kind in ("analog", "encoder"):
        if kind not in refs:
            raise StageInputError(f"RUN_ID={run.info.run_id} ({stage}) names no {kind} beside its chips")
    cfg = config_from_run(holder.info.run_id)
    return Source(run.info.run_id, cfg, refs, Path(workdir) / "_cache", stage)


# ---------------------------------------------------------------------------------------
# the chip as the block whose gradients retrain the encoder
# ---------------------------------------------------------------------------------------
def chip_block(chip, model, t: float):
    """What `grad_fn_for` needs of a block (`gradients(x, labels, method, input_grad, loss)`),
    on `chip` read at time t. The one place that knows how a chip offers gradients."""
    if chip.model is None:
        chip.model = model
    return chip.at(t)


# ---------------------------------------------------------------------------------------
# the recalibration
# ---------------------------------------------------------------------------------------
@dataclass
class Result:
    times: list
    before: np.ndarray          # (len(times), chips): the run's encoder on its chips
    after: np.ndarray           # (len(times), chips): recalibrated, NaN before T
    loop: int
    t: float
    mode: str
    history: dict = field(default_factory=dict)


def _grid(chips, enc, x_images, y, times, data_x=None) -> np.ndarray:
    from pipeline.hardware.chip_metrics import accuracy_grid
    x = enc.embed(x_images) if data_x is None else data_x
    return accuracy_grid(chips, x, y, times)


def recalibrate(src: Source, t: float, mode: str, eval_times, *, loop: int | None = None,
                epochs: int | None = None, say=print) -> tuple[Result, object, list]:
    """Recalibrate at time t (seconds after programming); returns (result, encoder, chips)
    with the recalibrated encoder and chips (the caller saves them and closes the chips)."""
    from pipeline.hardware import chip_files, settings
    from pipeline.system.build import load_encoder
    from pipeline.flow import load_analog
    from pipeline.flow.inputs import dataset
    if mode not in MODES:
        raise OptionError(f"--mode={mode}: one of {', '.join(MODES)}")
    cfg = src.cfg
    ds = dataset(cfg)
    enc = load_encoder(cfg, src.refs["encoder"].path(src.cache))
    model = load_analog(src.refs["analog"].path(src.cache))
    chips = chip_files.load_chips(src.refs["chips"].path(src.cache))
    loop = settings.loop_chip(cfg) if loop is None else loop
    if not 0 <= loop < len(chips):
        raise OptionError(f"--chip={loop}: the run has chips 0..{len(chips) - 1}")
    check_time(t, chips)
    times = sorted({float(x) for x in eval_times} | {t})
    for x in times:
        check_time(x, chips, "--eval-times")
    say(f"recalibrating {len(chips)} chip(s) of run {src.run_id} at t = {t:g} s ({mode}); loop chip {loop}")
    before = _grid(chips, enc, ds.x_test, ds.y_test, times)
    history: dict = {}
    if mode in ("chip", "both"):
        history.update(_finetune_chips(cfg, model, chips, enc.embed(ds.x_train), ds.y_train, t, epochs, say))
    if mode in ("encoder", "both"):
        history.update(_retrain_encoder(cfg, model, chips[loop], enc, ds, t, epochs, say))
    later = [x for x in times if x >= t]
    acc_later = _grid(chips, enc, ds.x_test, ds.y_test, later)
    after = np.full_like(before, np.nan)
    after[len(times) - len(later):] = acc_later
    model.close()
    return Result(times, before, after, loop, t, mode, history), enc, chips


def _retrain_encoder(cfg: RootConfig, model, chip, enc, ds, t, epochs, say) -> dict:
    from pipeline.system.through_analog import grad_fn_for, through_cost, trace_per_epoch
    d = cfg.digital
    epochs = int(d.retrain_epochs if epochs is None else epochs)
    block = chip_block(chip, model, t)
    grad_fn = grad_fn_for(block, ds.y_train, cfg.input_optimization.method, loss=through_cost(cfg))
    say(f"retraining the encoder through chip {chip.seed} read at t = {t:g} s: {epochs} epoch(s), "
        f"lr {d.through_lr}, cost {d.through_loss}")
    enc.fit_through(ds.x_train, ds.y_train, grad_fn, epochs=epochs, batch_size=d.batch_size,
                    learning_rate=d.through_lr, class_weight=d.class_weight, verbose=0)
    curve = trace_per_epoch(grad_fn.trace, len(ds.x_train), d.batch_size)
    return {f"through_{k}": v for k, v in curve.items()}


def _finetune_chips(cfg: RootConfig, model, chips, x_train, y_train, t, epochs, say) -> dict:
    from analog.hardware import finetune

    from pipeline.system.analog_block import compile_from_config
    from pipeline.system.analog_block import optimizer_for
    epochs = int((cfg.hardware.finetune_epochs or 1) if epochs is None else epochs)
    cfg = cfg.model_copy(update={"hardware": cfg.hardware.model_copy(update={"finetune_epochs": epochs})})
    compile_from_config(model, cfg, epochs)
    out: dict = {}
    for i, chip in enumerate(chips):
        opt = optimizer_for(cfg, chip)
        say(f"chip {i}: {epochs} in-situ EP epoch(s) at t = {t:g} s, {opt.base} lr {opt.lr:g}, {opt.rule} pulses")
        h = finetune(chip, x_train, y_train, loss=model.loss, beta=model.beta, nudging=model.nudging, optimizer=opt,
                     epochs=epochs, batch_size=cfg.training.batch_size, t=t, seed=cfg.seed + i)
        out[f"insitu_chip{i}_train_accuracy"] = h["accuracy"]
        out[f"insitu_chip{i}_moved_rel"] = h["moved_rel"]
    return out


# ---------------------------------------------------------------------------------------
# the plot
# ---------------------------------------------------------------------------------------
def plot(result: Result, path: Path, title: str) -> Path:
    """Accuracy against read time, mean over chips and the loop chip, with and without."""
    from pipeline.hardware.chip_metrics import spread
    from pipeline.flow.plots import accuracy_vs_time
    idx = [i for i, x in enumerate(result.times) if x >= result.t]
    series = {"without recalibration (mean over chips)": (result.times, result.before.mean(1),
                                                         [spread(r) for r in result.before]),
              f"recalibrated at {result.t:g} s ({result.mode}), mean over chips":
                  ([result.times[i] for i in idx], result.after[idx].mean(1), [spread(r) for r in result.after[idx]])}
    if result.before.shape[1] > 1:
        series[f"chip {result.loop} (in the loop), without"] = (result.times, result.before[:, result.loop], None)
        series[f"chip {result.loop}, recalibrated"] = ([result.times[i] for i in idx], result.after[idx, result.loop],
                                                      None)
    return accuracy_vs_time(series, path, title=title)


def _time_label(t: float) -> str:
    for unit in ("y", "d", "h"):
        if t >= _UNITS[unit]:
            return f"{t / _UNITS[unit]:g} {unit}"
    return f"{t:g} s"


def tables_series(tables: list[dict]) -> dict:
    """Several recalibrations of one co-training (their `recalibration.json` tables) as
    accuracy_vs_time series: without recalibration from the first (mean over chips ± spread,
    and its loop chip), then per recalibration the mean over chips and its loop chip, from
    its time T on."""
    from pipeline.hardware.chip_metrics import spread
    first = tables[0]
    without, k = np.asarray(first["without"], float), first["loop_chip"]
    series = {"without recalibration, mean over chips": (first["times"], without.mean(1), [spread(r) for r in without]),
              f"without, chip {k}": (first["times"], without[:, k], None)}
    for tab in tables:
        rows = [(t, np.asarray(a, float)) for t, a in zip(tab["times"], tab["with"]) if a is not None and a[0] is not None]
        name = f"recalibrated at {_time_label(tab['t'])} ({tab['mode']})"
        series[f"{name}, mean"] = ([t for t, _ in rows], [a.mean() for _, a in rows], None)
        series[f"{name}, chip {tab['loop_chip']}"] = ([t for t, _ in rows], [a[tab["loop_chip"]] for _, a in rows], None)
    return series


def read_table(path) -> dict:
    """A recalibrate run's `recalibration.json` (the file, or the run's folder holding it)."""
    import json
    p = Path(path)
    p = p / "recalibration.json" if p.is_dir() else p
    if not p.is_file():
        raise InputError(f"--recalibration {path}: no recalibration.json there (a `mixsig recalibrate` run's "
                         f"folder or its recalibration.json)")
    return json.loads(p.read_text())
