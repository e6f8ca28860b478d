"""The config's `hardware:` section read for the stages: whether chips are frozen, their
seeds, the read times of the evaluations, the chip in the loop, the programmed scenario's name."""
from __future__ import annotations


def hardware(cfg: dict) -> dict | None:
    return cfg.get("hardware") or None


def frozen(cfg: dict) -> bool:
    hw = hardware(cfg)
    return bool(hw and hw.get("frozen"))


def chip_seeds(cfg: dict) -> list[int]:
    """Seed of chip i: hardware.seed (default: the config's seed) + i."""
    hw = hardware(cfg)
    base = hw.get("seed")
    base = int(cfg.get("seed", 0) if base is None else base)
    return [base + i for i in range(int(hw["chips"]))]


def eval_times(cfg: dict) -> list[float]:
    """Read times of the evaluations: hardware.times, with t = 0 first if it is not there (the
    scenario metrics are taken at t = 0 and at the last time)."""
    times = [float(t) for t in (hardware(cfg) or {}).get("times") or []]
    return times if times and times[0] == 0.0 else [0.0] + times


def loop_chip(cfg: dict) -> int:
    """Index of the chip in the loop of a frozen co-training (hardware.loop_chip, default 0)."""
    return int((hardware(cfg) or {}).get("loop_chip") or 0)


def programmed_scenario(cfg: dict) -> str:
    return "aware_programmed" if (hardware(cfg) or {}).get("training") == "aware" else "programmed"
