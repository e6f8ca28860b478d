"""The `chips` artifact: a folder with `chip<i>/` per programmed chip, each chip.json +
chip.npz (`Chip.save`, no pickle), `model/` (the trained block it was programmed from) and
`netlist.cir` (a standalone ngspice netlist of the chip read at t = 0 on one test sample).
Saving, loading, and the chip in the loop of a frozen co-training as a stage's block."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from pipeline.errors import StageInputError
from pipeline.hardware.settings import loop_chip


def save_chip(chip, folder: Path, x_sample) -> Path:
    chip.save(folder)
    (folder / "netlist.cir").write_text(chip.to_netlist(np.atleast_2d(x_sample)[:1], t=0.0,
                                                        rng=np.random.default_rng(chip.seed)))
    return folder


def load_chips(folder: Path, only: int | None = None, model=None) -> list:
    """The chips of a `chips` artifact folder, in chip order (or just chip `only`), each on
    `model` (default: the trained model saved beside it)."""
    from analog.hardware import Chip
    folder = Path(folder)
    found = sorted((int(m.group(1)), p) for p in folder.iterdir() if p.is_dir()
                   and (m := re.fullmatch(r"chip(\d+)", p.name))) if folder.is_dir() else []
    if not found:
        raise StageInputError(f"chips input {folder} holds no chip<i>/ folders (not a program run's chips)")
    if only is not None:
        picked = [(i, p) for i, p in found if i == only]
        if not picked:
            raise StageInputError(f"hardware.loop_chip={only}: the chips input {folder} holds chips "
                                  f"{', '.join(str(i) for i, _ in found)}, not chip {only}")
        found = picked
    return [Chip.load(p, model) for _, p in found]


def loop_block(ctx, model):
    """The frozen chip in the loop (hardware.loop_chip) standing in for the trained model, as
    an `analog.block.Block`: loaded on that model (its circuit, cost, β and nudging), read at
    the first read time (t = 0) with a fresh read on every call."""
    return load_chips(ctx.input("chips"), only=loop_chip(ctx.cfg), model=model)[0]
