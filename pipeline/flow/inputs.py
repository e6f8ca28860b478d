"""A stage's inputs: which it needs for a config, and whether the ones given fit — all
checked before a run is created or any work is done (StageInputError names the input)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import json
from pathlib import Path

from pipeline.flow.artifacts import KINDS, StageInputError, input_width

if TYPE_CHECKING:
    from pipeline.config import RootConfig

# the order in which neighbouring inputs are compared for their embedding width
_WIDTH_ORDER = ("encoder", "analog", "embeddings", "targets")


# ---------------------------------------------------------------------------------------
# data (cached per process: a co-training loads its data set once)
# ---------------------------------------------------------------------------------------
_DATA_CACHE: dict = {}


def dataset(cfg: RootConfig):
    from pipeline.data import load_dataset
    key = (json.dumps(cfg.data.model_dump(), sort_keys=True), cfg.seed)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()
        _DATA_CACHE[key] = load_dataset(cfg.data, seed=cfg.seed)
    return _DATA_CACHE[key]


def is_image_data(cfg: RootConfig) -> bool:
    return cfg.data.dataset == "fashion_mnist"


def test_set_of_run(run_id: str, cfg: RootConfig, refs: dict, cache: Path, purpose: str):
    """The test inputs (volts) and labels a run's block is judged on: the test embeddings
    the run names for images, the config's tabular test split in volts otherwise."""
    import numpy as np
    if is_image_data(cfg):
        if "embeddings" not in refs:
            raise StageInputError(f"run {run_id} names no embeddings to {purpose}")
        from pipeline.flow.artifacts import load_embeddings
        emb = load_embeddings(refs["embeddings"].path(cache))
        x, y = emb["x_test"], emb["y_test"]
    else:
        from pipeline.data import load_dataset, tabular_to_volts
        ds = load_dataset(cfg.data, seed=cfg.seed)
        x = tabular_to_volts(ds.x_train, ds.x_val, ds.x_test, amplitude=cfg.analog.input_amplitude)[2]
        y = ds.y_test
    if not len(y):
        raise StageInputError(f"run {run_id}: no test samples")
    return np.asarray(x, float), np.asarray(y)


def has_encoder(cfg: RootConfig) -> bool:
    """False for `digital.encoder: none`: the analog block takes the image pixels (an analog
    front end, e.g. a locally connected first layer), as volts (`pipeline.flow.stage_data.pixel_volts`)."""
    return cfg.digital.encoder.strip().lower() != "none"


def takes_pixels(cfg: RootConfig) -> bool:
    """Images fed to the analog block without a digital encoder."""
    return is_image_data(cfg) and not has_encoder(cfg)


# ---------------------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------------------
def check_inputs(stage, cfg: RootConfig, inputs: dict, cache: Path) -> dict:
    """The inputs `stage` uses, downloaded and checked: present, mutually fitting widths,
    the config's embedding width, the encoder's voltage range. Raises StageInputError."""
    from pipeline.runtime.limits import check_config
    try:
        check_config(cfg)     # a block that cannot fit in memory, before any run or allocation
    except ValueError as exc:
        raise StageInputError(f"{stage.name}: {exc}") from None
    if stage.precheck is not None:
        try:
            stage.precheck(cfg)
        except ValueError as exc:
            raise StageInputError(f"{stage.name}: {exc}") from None
    required = stage.required_inputs(cfg)
    missing = [k for k in required if k not in inputs]
    if missing:
        k = missing[0]
        raise StageInputError(
            f"{stage.name}: missing input '{k}' ({KINDS[k][1]}); pass --from-run RUN_ID of a run that has it, "
            f"--input {k}=RUN_ID|FOLDER, or set inputs.{k} in the config")
    used = {k: v for k, v in inputs.items() if k in stage.needs + stage.optional or k in required}
    widths = {}
    for kind, ref in used.items():
        ref.path(cache)
        widths[kind] = (input_width(kind, ref.local), ref)
    items = sorted(widths.items(), key=lambda kv: _WIDTH_ORDER.index(kv[0]) if kv[0] in _WIDTH_ORDER else 99)
    check_widths(stage.name, cfg, items)
    if is_image_data(cfg) and "encoder" in used:
        check_encoder_range(stage.name, cfg, used["encoder"])
    return used


def check_widths(name: str, cfg: RootConfig, items) -> None:
    """Neighbouring inputs agree on the embedding width, and (images) the config's
    digital.embedding_dim is that width: it is logged as a param and sizes new encoders."""
    for (k1, (w1, r1)), (k2, (w2, r2)) in zip(items, items[1:]):
        if w1 is not None and w2 is not None and w1 != w2:
            raise StageInputError(
                f"{name}: embedding width mismatch: {_width_text(k1, w1, r1)} but {_width_text(k2, w2, r2)}")
    if not is_image_data(cfg) or not has_encoder(cfg):   # no encoder: the width is the pixel count
        return
    dim = cfg.digital.embedding_dim
    for kind, (w, ref) in items:
        if w is not None and w != dim:
            raise StageInputError(
                f"{name}: digital.embedding_dim is {dim} in the config but {_width_text(kind, w, ref)}; "
                f"set digital.embedding_dim: {w} (or --set digital.embedding_dim={w}) or use inputs {dim} wide")


def check_encoder_range(name: str, cfg: RootConfig, ref) -> None:
    """The encoder's output range lies within the analog block's input range."""
    from digital.base import read_manifest
    params = read_manifest(ref.local)["params"]
    amp = cfg.analog.input_amplitude
    lo, hi = float(params.get("v_low", -amp)), float(params.get("v_high", amp))
    if lo < -amp - 1e-12 or hi > amp + 1e-12:
        raise StageInputError(f"{name}: the encoder from {ref.describe()} outputs [{lo:g}, {hi:g}] V but the "
                              f"analog block takes inputs within ±analog.input_amplitude = ±{amp:g} V")


def _width_text(kind, width, ref) -> str:
    what = {"encoder": "the encoder from {r} has embedding width {w}",
            "embeddings": "the embeddings from {r} are {w} wide",
            "targets": "the target embeddings from {r} are {w} wide",
            "analog": "the analog block from {r} takes {w} input voltages"}.get(kind, "the {k} from {r} is {w} wide")
    return what.format(r=ref.describe(), w=width, k=kind)
