"""Which run's artifacts make a system, and its system.json.

A co-training parent stands for its last finished evaluate run; an evaluate run names the
encoder, the block and the chips it evaluated in its lineage tags (pipeline.flow.lineage).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pathlib import Path

from pipeline.serving.images import ServingInputError
from pipeline.serving.system import FORMAT, PARTS, VERSION

if TYPE_CHECKING:
    from pipeline.config import RootConfig

SOURCE_STAGES = ("cotrain", "evaluate")


def system_spec(cfg: RootConfig, source_run: str, n_chips: int) -> dict:
    """system.json of a run's config: class names, how pixels reach the block, chips."""
    from pipeline.system.build import plugin_modules
    from pipeline.hardware.settings import eval_times
    from pipeline.data import FASHION_CLASSES
    from pipeline.flow.inputs import has_encoder, is_image_data
    if not is_image_data(cfg):
        raise ServingInputError(f"run {source_run} was trained on {cfg.data.dataset}, not on images; "
                                f"only image systems are served")
    d = cfg.digital
    return {"format": FORMAT, "version": VERSION, "classes": list(FASHION_CLASSES),
            "input": "encoder" if has_encoder(cfg) else "pixels",
            "encoder_modules": list(plugin_modules(cfg)),
            "digital": {"v_low": float(d.v_low), "v_high": float(d.v_high)},
            "chips": int(n_chips), "read_times": eval_times(cfg) if n_chips else [],
            "source_run": source_run, "experiment": cfg.mlflow.experiment or cfg.name}


def _source_run(run_id: str):
    """The evaluate run a RUN_ID stands for."""
    from mlflow.tracking import MlflowClient

    from pipeline.flow.lineage import finished_child, get_run, tag
    run = get_run(run_id, what="run")
    rid = run.info.run_id
    stage = run.data.tags.get(tag("stage"), "not a mixsig stage")
    if stage == "cotrain":
        kid = finished_child(MlflowClient(), run, "evaluate")
        if kid is None:
            raise ServingInputError(f"co-training {rid} has no finished evaluate run, so no trained block to "
                                    f"classify with (resume it with `mixsig cotrain --resume {rid[:8]}`)")
        return kid
    if stage not in SOURCE_STAGES:
        raise ServingInputError(f"run {rid} is a {stage} run; give a co-training (parent) run or an evaluate run")
    return run


def parts_of_run(run_id: str, cache: Path) -> tuple[dict, dict, str]:
    """(config, {part: local folder}, evaluate run id) of a RUN_ID, downloaded into `cache`."""
    from pipeline.flow.inputs import has_encoder
    from pipeline.flow.lineage import config_from_run, refs_of_run
    run = _source_run(run_id)
    rid = run.info.run_id
    refs = refs_of_run(run)
    if "analog" not in refs:
        raise ServingInputError(f"run {rid} names no trained analog block")
    cfg = config_from_run(rid)
    wanted = ["analog"] + (["encoder"] if has_encoder(cfg) else []) + (["chips"] if "chips" in refs else [])
    missing = [k for k in wanted if k not in refs]
    if missing:
        raise ServingInputError(f"run {rid} names no {missing[0]} (its lineage lacks mixsig.artifact.{missing[0]})")
    return cfg, {k: refs[k].path(cache) for k in wanted}, rid


def load_run_system(run_id: str, cache: Path):
    """The MixedSignalSystem of a co-training or evaluate run."""
    from pipeline.serving.system import MixedSignalSystem
    cfg, parts, rid = parts_of_run(run_id, cache)
    n_chips = count_chips(parts.get("chips"))
    return MixedSignalSystem.load(system_spec(cfg, rid, n_chips), parts["analog"], parts.get("encoder"),
                                  parts.get("chips"))


def count_chips(folder) -> int:
    import re
    if folder is None or not Path(folder).is_dir():
        return 0
    return sum(1 for p in Path(folder).iterdir() if p.is_dir() and re.fullmatch(r"chip\d+", p.name))


def part_folders(parts: dict) -> dict:
    """{artifact name in the MLflow model: local folder} of a system's parts."""
    return {PARTS[k]: Path(v).resolve() for k, v in parts.items() if v is not None}
