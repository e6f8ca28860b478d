"""Co-training one encoder through a population of chips (hardware.loop_chips), and the split
of the programmed chips into those in the loop and those held out.

All `hardware.chips` chips are programmed from the same trained block with seeds
hardware.seed + i (pipeline.hardware.settings.chip_seeds); the loop chips are the ones retraining reads,
the held-out chips are the others: the same preset, other seeds, never read by training. The
scenario metrics of a population run add, at t = 0, the means over each part:

  e2e_acc_<scenario>_loop / _heldout     programmed (or aware_programmed) and cotrained
  recovered_fraction_heldout             (cotrained − programmed) / (ideal − programmed) over
                                         the held-out chips: what the encoder carries to chips
                                         it never saw
  recovered_fraction_loop_chips          the same over the loop chips

With loop chips, the per-round figures of the chip in the loop (round_chip_e2e_accuracy,
loop_chip_programmed_accuracy, recovered_fraction_loop) are means over the loop chips.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pipeline.hardware import chip_files
from pipeline.hardware import settings as hw

if TYPE_CHECKING:
    from pipeline.config import RootConfig

__all__ = ["loop_indices", "held_out_indices", "loop_label", "loop_block", "log_split", "split_recovery"]


def population(cfg: RootConfig) -> bool:
    return cfg.hardware is not None and bool(cfg.hardware.loop_chips)


def loop_indices(cfg: RootConfig) -> list[int]:
    """The chips in the loop: hardware.loop_chips (validated: distinct, in range), else the one
    chip hardware.loop_chip."""
    return list(cfg.hardware.loop_chips) if population(cfg) else [hw.loop_chip(cfg)]


def held_out_indices(cfg: RootConfig) -> list[int]:
    """The chips never read by training: every programmed chip not in the loop (none without
    hardware.loop_chips)."""
    if not population(cfg):
        return []
    loop = set(loop_indices(cfg))
    return [i for i in range(cfg.hardware.chips) if i not in loop]


def loop_label(cfg: RootConfig) -> str:
    idx = loop_indices(cfg)
    return f"chip {idx[0]}" if len(idx) == 1 else f"chips {', '.join(str(i) for i in idx)}"


def loop_block(ctx, model):
    """The block retraining reads: the chip in the loop (a `Chip`), or with hardware.loop_chips
    a `ChipPopulation` of those chips, each loaded on `model` and read at t = 0."""
    if not population(ctx.cfg):
        return chip_files.loop_block(ctx, model)
    from analog.hardware import ChipPopulation
    return ChipPopulation([chip_files.load_chips(ctx.input("chips"), only=i, model=model)[0] for i in loop_indices(ctx.cfg)])


def log_split(ctx, scenario: str, acc: np.ndarray) -> dict:
    """e2e_acc_<scenario>_loop and _heldout (means at t = 0 of the (times, chips) grid `acc`)
    on the stage run and the parent; nothing without hardware.loop_chips."""
    if not population(ctx.cfg):
        return {}
    m = {f"e2e_acc_{scenario}_loop": float(acc[0, loop_indices(ctx.cfg)].mean()),
         f"e2e_acc_{scenario}_heldout": float(acc[0, held_out_indices(ctx.cfg)].mean())}
    ctx.log(m)
    ctx.log_parent(m)
    return m


def split_recovery(metrics: dict) -> dict:
    """recovered_fraction_heldout and recovered_fraction_loop_chips from a parent's metrics
    (each only when its programmed and cotrained means and the ideal accuracy are there and
    the drop is positive)."""
    out = {}
    prog = next((p for p in ("programmed", "aware_programmed") if f"e2e_acc_{p}_heldout" in metrics), None)
    # with hardware.output_trim: the trim alone (programmed chips, trimmed) and encoder + trim
    for after, tail in (("cotrained", ""), ("cotrained_trimmed", "_trimmed"), (f"{prog}_trimmed", "_trim_only")):
        for part, name in (("heldout", "recovered_fraction_heldout"), ("loop", "recovered_fraction_loop_chips")):
            keys = ("e2e_acc_ideal", f"e2e_acc_{prog}_{part}", f"e2e_acc_{after}_{part}")
            if prog is None or any(k not in metrics for k in keys):
                continue
            ideal, p, c = (metrics[k] for k in keys)
            if ideal - p > 0:
                out[name + tail] = (c - p) / (ideal - p)
    return out
