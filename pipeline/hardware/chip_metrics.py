"""Figures of programmed chips: the programming error, accuracies per read time and chip,
their spread, and the recovered fractions of a co-training.

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

import numpy as np

SCENARIO_LABELS = {"ideal": "ideal block", "programmed": "programmed, as trained",
                   "aware_programmed": "programmed, hardware-aware training",
                   "insitu": "programmed, fine-tuned in situ (EP on the chip)",
                   "cotrained": "programmed, encoder co-trained on the chip"}


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


def accuracy_grid(chips, x, y, times) -> np.ndarray:
    """(len(times), len(chips)) accuracies (`Chip.accuracy`: a fresh read per batch of 4096)."""
    return np.array([[c.accuracy(x, y, t) for c in chips] for t in times], float)


def accuracy_grids(chips, x, y, times, cal: tuple | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(accuracy grid as `accuracy_grid` gives it, trimmed grid or None): with `cal` = (x_cal,
    y_cal), the trimmed accuracies (analog.hardware.trimmed_accuracy_grid) come from the same
    reads of the test set x, which each chip then reads once per read time, not twice."""
    from analog.block import score_outputs
    from analog.hardware import read_grid, trimmed_accuracy_grid
    if cal is None:
        return accuracy_grid(chips, x, y, times), None
    y = np.asarray(y)
    reads = read_grid(chips, x, times)
    acc = np.array([[score_outputs(*r, y)["accuracy"] for r in row] for row in reads], float)
    return acc, trimmed_accuracy_grid(chips, *cal, x, y, times, reads=reads)


def spread(values) -> float:
    """Spread across chips: the sample standard deviation (0 for one chip)."""
    v = np.asarray(values, float)
    return float(v.std(ddof=1)) if v.size > 1 else 0.0


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
