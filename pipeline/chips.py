"""Chips in the pipeline: programming a trained block onto `hardware.chips` chips, saving and
reading them back (the `chips` artifact), their accuracy at each read time, the scenario
metrics of a run with a `hardware:` section, and the chip in the loop of a frozen co-training.

A `chips` artifact folder holds `chip<i>/` per chip: chip.json + chip.npz (`Chip.save`, no
pickle), `model/` (the trained block it was programmed from) and `netlist.cir` (a standalone
ngspice netlist of the chip read at t = 0 on one test sample).

Scenario metrics (end-to-end test accuracy, mean over chips; `_std` is the spread across
chips, `_tmax` the same at the last read time):

  e2e_acc_ideal                the ideal (unprogrammed) block
  e2e_acc_programmed           the block as trained, programmed, no adaptation
  e2e_acc_aware_programmed     the same when the block was trained hardware-aware
  e2e_acc_insitu               after in-situ EP fine-tuning of each chip (hardware.finetune_epochs)
  e2e_acc_cotrained            after the co-training rounds with the frozen chip in the loop (on the
                               fine-tuned chips when hardware.finetune_epochs > 0)
  recovered_fraction           (cotrained − programmed) / (ideal − programmed)
  recovered_fraction_insitu    (insitu − programmed) / (ideal − programmed)
  recovered_fraction_loop      the same as recovered_fraction on the chip in the loop alone
                               (hardware.loop_chip), from its accuracy as programmed and after
                               the last round: what that chip wins back (in-situ fine-tuning
                               included when hardware.finetune_epochs > 0)
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

SCENARIO_LABELS = {"ideal": "ideal block", "programmed": "programmed, as trained",
                   "aware_programmed": "programmed, hardware-aware training",
                   "insitu": "programmed, fine-tuned in situ (EP on the chip)",
                   "cotrained": "programmed, encoder co-trained on the chip"}


# ---------------------------------------------------------------------------------------
# the config's hardware section
# ---------------------------------------------------------------------------------------
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


def loop_block(ctx, model):
    """The frozen chip in the loop (hardware.loop_chip) standing in for the trained model, as
    an `analog.block.Block`: loaded on that model (its circuit, cost, β and nudging), read at
    the first read time (t = 0) with a fresh read on every call."""
    return load_chips(ctx.input("chips"), only=loop_chip(ctx.cfg), model=model)[0]


def programmed_scenario(cfg: dict) -> str:
    return "aware_programmed" if (hardware(cfg) or {}).get("training") == "aware" else "programmed"


# ---------------------------------------------------------------------------------------
# programming, saving, loading
# ---------------------------------------------------------------------------------------
def save_chip(chip, folder: Path, x_sample) -> Path:
    chip.save(folder)
    (folder / "netlist.cir").write_text(chip.to_netlist(np.atleast_2d(x_sample)[:1], t=0.0,
                                                        rng=np.random.default_rng(chip.seed)))
    return folder


def load_chips(folder: Path, only: int | None = None, model=None) -> list:
    """The chips of a `chips` artifact folder, in chip order (or just chip `only`), each on
    `model` (default: the trained model saved beside it)."""
    from analog.hardware import Chip
    from pipeline.stages.artifacts import StageInputError
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


def programming_stats(chip, model) -> dict:
    """Target (what EP trained, in device units) against realised conductances: mean and
    largest |ΔG|/g_max, stuck counts, device count; plus the raw arrays for histograms."""
    g_max = chip.spec.device.g_max
    target = np.concatenate([k * np.asarray(G, float).ravel() for G, k in zip(model.conductances, chip.scale)])
    real = np.concatenate([g.ravel() for g in chip.G_prog])
    stuck = np.concatenate([s.ravel() for s in chip.stuck])
    rel = np.abs(real - target) / g_max
    return {"devices": int(real.size), "mean_abs_dG_rel": float(rel.mean()), "max_abs_dG_rel": float(rel.max()),
            "stuck_g_min": int((stuck < 0).sum()), "stuck_g_max": int((stuck > 0).sum()),
            "_target": target, "_realised": real}


# ---------------------------------------------------------------------------------------
# accuracy
# ---------------------------------------------------------------------------------------
def accuracy_grid(chips, x, y, times) -> np.ndarray:
    """(len(times), len(chips)) accuracies (`Chip.accuracy`: a fresh read per batch of 4096)."""
    return np.array([[c.accuracy(x, y, t) for c in chips] for t in times], float)


def spread(values) -> float:
    """Spread across chips: the sample standard deviation (0 for one chip)."""
    v = np.asarray(values, float)
    return float(v.std(ddof=1)) if v.size > 1 else 0.0


def log_grid(ctx, times, acc: np.ndarray, prefix: str = "chip_acc") -> dict:
    """Per read time (step = time index): time_s, mean/std/min/max over chips and each
    chip's accuracy on the stage's run; returns the t = 0 and t_max summaries."""
    for i, t in enumerate(times):
        row = acc[i]
        ctx.log({"time_s": t, f"{prefix}_mean": row.mean(), f"{prefix}_std": spread(row), f"{prefix}_min": row.min(),
                 f"{prefix}_max": row.max(), **{f"{prefix}_chip{j}": a for j, a in enumerate(row)}},
                step=i, final=False)
    summary = {f"{prefix}_mean_t0": acc[0].mean(), f"{prefix}_std_t0": spread(acc[0]),
               f"{prefix}_mean_tmax": acc[-1].mean(), f"{prefix}_std_tmax": spread(acc[-1]), "tmax_s": times[-1]}
    ctx.log(summary)
    return summary


def log_scenario(ctx, name: str, times, acc: np.ndarray | None = None, ideal: float | None = None) -> dict:
    """A scenario's metrics on the stage run and (in a co-training) on the parent run:
    e2e_acc_<name>[_std][_tmax[_std]] and its series per read time (scenario_acc_<name>,
    step = time index) for the accuracy-vs-time plot."""
    if acc is None:
        acc = np.full((len(times), 1), float(ideal))
    m = {f"e2e_acc_{name}": acc[0].mean(), f"e2e_acc_{name}_tmax": acc[-1].mean()}
    if name != "ideal":
        m.update({f"e2e_acc_{name}_std": spread(acc[0]), f"e2e_acc_{name}_tmax_std": spread(acc[-1])})
    ctx.log(m)
    ctx.log_parent(m)
    for i, t in enumerate(times):
        ctx.log_parent({f"scenario_acc_{name}": acc[i].mean(), f"scenario_std_{name}": spread(acc[i]),
                        "scenario_time_s": t}, step=i)
    return m


def recovered_fraction(metrics: dict, suffix: str = "", scenario: str = "cotrained") -> tuple[float | None, str]:
    """(value, why) of (<scenario> − programmed)/(ideal − programmed) from a run's metrics;
    value None (not defined) when a scenario is missing or when the drop ideal − programmed
    is within the spread of the programmed accuracy across chips."""
    prog = next((p for p in ("programmed", "aware_programmed") if f"e2e_acc_{p}{suffix}" in metrics), None)
    keys = [f"e2e_acc_ideal{suffix}", f"e2e_acc_{scenario}{suffix}"]
    if prog is None or any(k not in metrics for k in keys):
        return None, f"not defined: needs e2e_acc_ideal, e2e_acc_programmed and e2e_acc_{scenario}"
    ideal, cot = metrics[keys[0]], metrics[keys[1]]
    p, s = metrics[f"e2e_acc_{prog}{suffix}"], metrics.get(f"e2e_acc_{prog}{suffix}_std", 0.0)
    drop = ideal - p
    if drop <= s or drop <= 0:
        return None, (f"not defined: the drop ideal - programmed = {drop:.4f} is within the spread across "
                      f"chips ({s:.4f})")
    return (cot - p) / drop, f"from {prog}"


def recovered_fraction_loop(metrics: dict, rounds: list) -> tuple[float | None, str]:
    """(value, why) of (after the last round − programmed) / (ideal − programmed) on the chip
    in the loop alone; `rounds`: [(round, accuracy)] of round_chip_e2e_accuracy. None when
    there was no round or the chip lost nothing to programming."""
    after = {r: a for r, a in rounds if r > 0}
    missing = [k for k in ("loop_chip_programmed_accuracy", "e2e_acc_ideal") if k not in metrics]
    if missing or not after:
        return None, (f"not defined: needs a frozen co-training with at least one round (missing: "
                      f"{', '.join(missing) or 'round_chip_e2e_accuracy after round 0'})")
    p, ideal = metrics["loop_chip_programmed_accuracy"], metrics["e2e_acc_ideal"]
    if ideal - p <= 0:
        return None, f"not defined: the chip in the loop lost nothing to programming ({p:.4f} vs ideal {ideal:.4f})"
    return (after[max(after)] - p) / (ideal - p), "defined"


def series(client, run_id: str, key: str) -> list[float]:
    """A metric's values by step (the latest value logged at each step), in step order."""
    by_step: dict = {}
    for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp):
        by_step[m.step] = m.value
    return [by_step[k] for k in sorted(by_step)]
