"""The config's `hardware:` section read for the stages: whether chips are frozen, their
seeds, the read times of the evaluations, the chip in the loop, the programmed scenario's name."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.config import RootConfig


def frozen(cfg: RootConfig) -> bool:
    return cfg.hardware is not None and cfg.hardware.frozen


def chip_seeds(cfg: RootConfig) -> list[int]:
    """Seed of chip i: hardware.seed (default: the config's seed) + i."""
    from pipeline.system.analog_block import chip_seed_base   # the analog block's modules load on use only
    base = chip_seed_base(cfg)
    return [base + i for i in range(cfg.hardware.chips)]


def eval_times(cfg: RootConfig) -> list[float]:
    """Read times of the evaluations: hardware.times, with t = 0 first if it is not there (the
    scenario metrics are taken at t = 0 and at the last time)."""
    times = [float(t) for t in cfg.hardware.times] if cfg.hardware is not None else []
    return times if times and times[0] == 0.0 else [0.0] + times


def loop_chip(cfg: RootConfig) -> int:
    """Index of the chip in the loop of a frozen co-training (hardware.loop_chip)."""
    return cfg.hardware.loop_chip if cfg.hardware is not None else 0


def programmed_scenario(cfg: RootConfig) -> str:
    return "aware_programmed" if cfg.hardware is not None and cfg.hardware.training == "aware" else "programmed"
