"""A co-training's summary on its parent run, built from the loop's record of its steps.

The record (pipeline.flow.record.RunRecord) holds what every step returned: its metrics, its
wall time and the metrics it logged on the parent (per-round accuracies with step = round,
scenario figures). From it come the summary scalars (first and last round accuracies, the
final evaluation, recovered fractions, stage times), the per-round series and plots,
summary.json and the run's description; nothing is read back from the tracking store.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import json
from pathlib import Path

from pipeline.flow import TAG

if TYPE_CHECKING:
    from pipeline.config import RootConfig
    from pipeline.flow.record import RunRecord

__all__ = ["ROUND_METRICS", "round_series", "round_e2e", "summarize"]

ROUND_METRICS = {
    "digital-only": "round_digital_test_accuracy",
    "analog block (end to end)": "round_analog_test_accuracy",
    "retrained encoder → previous block": "round_retrained_end_to_end_test_accuracy",
}


def round_series(record: RunRecord) -> dict:
    """{label: [(round, value), ...]} of the per-round accuracies the steps logged on the parent."""
    return {label: list(series.items()) for label, key in ROUND_METRICS.items() if (series := record.series(key))}


def round_e2e(record: RunRecord) -> dict:
    """{round: end-to-end test accuracy after that round}.

    With the chips frozen: the chip in the loop (hardware.loop_chip) read at the first read
    time, round 0 = as programmed (or fine-tuned in situ), round r = after r encoder
    retrainings (`round_chip_e2e_accuracy`).
    Otherwise: round 0 = the first block behind the first encoder, round r = the block
    trained in round r behind the encoder after r retrainings (`round_analog_test_accuracy`);
    a round without its own block training takes the retrained encoder on the previous block."""
    chip = record.series("round_chip_e2e_accuracy")
    if chip:
        return chip
    analog = record.series("round_analog_test_accuracy")
    retrained = record.series("round_retrained_end_to_end_test_accuracy")
    if 0 not in analog:
        return {}
    out = {0: analog[0]}
    r = 1
    while r in analog or (r - 1) in retrained:
        out[r] = analog.get(r, retrained.get(r - 1))
        r += 1
    return out


def _scalars(record: RunRecord, cfg: RootConfig, root: Path) -> dict:
    """First and last round accuracies, the final evaluation's and the hardware figures."""
    summary = {}
    analog = record.series("round_analog_test_accuracy")
    digital = record.series("round_digital_test_accuracy")
    if analog:
        summary["analog_first_test_accuracy"] = analog[min(analog)]
        summary["end_to_end_test_accuracy"] = analog[max(analog)]
    if digital:
        summary["digital_first_test_accuracy"] = digital[min(digital)]
        summary["digital_last_test_accuracy"] = digital[max(digital)]
    latest = record.latest()
    for key in ("final_baseline_test_accuracy", "final_end_to_end_test_accuracy", "final_digital_test_accuracy"):
        if key in latest:
            summary[key.replace("final_", "")] = latest[key]
    if cfg.hardware is not None:
        summary.update(_hardware_summary(record, root))
    return summary


def summarize(client, parent_id: str, cfg: RootConfig, root: Path, plan, record: RunRecord) -> dict:
    """Log the summary on the parent (scalars, per-round series, plots, summary.json, the
    description); returns the parent's metrics as its run then shows them."""
    import mlflow

    from pipeline.cotraining import report
    from pipeline.flow import plots
    series = round_series(record)
    summary = _scalars(record, cfg, root)
    summary.update(report.stage_times(client, parent_id, record))
    logged = {**record.latest(), **{f"stage_seconds_{name}": s[max(s)] for name, s in record.stage_seconds().items()}}
    if summary:
        mlflow.log_metrics(summary)
    path = plots.accuracy_per_round(series, root / "plots" / "accuracy_per_round.png",
                                    title=f"{cfg.name}: test accuracy per round")
    mlflow.log_artifact(str(path), artifact_path="plots")
    e2e = round_e2e(record)
    if e2e:
        logged.update(_log_e2e(client, parent_id, cfg, root, record, e2e))
        summary["round_e2e"] = {str(r): e2e[r] for r in sorted(e2e)}
    (root / "summary.json").write_text(json.dumps({"summary": summary, "rounds": series}, indent=2))
    mlflow.log_artifact(str(root / "summary.json"))
    logged.update({k: v for k, v in summary.items() if k != "round_e2e"})
    report.describe(client, parent_id, cfg, root, plan, logged)
    return logged


def _log_e2e(client, parent_id: str, cfg: RootConfig, root: Path, record: RunRecord, e2e: dict) -> dict:
    """round_e2e_accuracy, round_gain (step = round), rounds_gain_total and their plot; returns
    the latest value of each metric logged."""
    import mlflow

    from pipeline.cotraining import report
    from pipeline.flow import plots
    from pipeline.hardware.population import loop_label
    rounds = sorted(e2e)
    gains = {r: e2e[r] - e2e[r - 1] for r in rounds if r - 1 in e2e}
    report.log_series(client, parent_id, "round_e2e_accuracy", e2e)
    report.log_series(client, parent_id, "round_gain", gains)
    logged = {"round_e2e_accuracy": e2e[rounds[-1]], **({"round_gain": gains[max(gains)]} if gains else {})}
    if len(rounds) > 1:
        logged["rounds_gain_total"] = e2e[rounds[-1]] - e2e[rounds[0]]
        mlflow.log_metric("rounds_gain_total", logged["rounds_gain_total"])
    where = loop_label(cfg) if record.series("round_chip_e2e_accuracy") else "the round's block"
    path = plots.round_gains(rounds, [e2e[r] for r in rounds], root / "plots" / "e2e_per_round.png",
                             title=f"{cfg.name}: end-to-end test accuracy per round ({where})")
    mlflow.log_artifact(str(path), artifact_path="plots")
    return logged


def trimmed_recovery_names(metrics: dict) -> dict:
    """{trimmed scenario logged: its recovered-fraction key} with hardware.output_trim: the
    encoder + trim (cotrained_trimmed), and the trim alone on the chips as programmed, logged
    as aware_programmed_trimmed when the block was trained hardware-aware, and named
    recovered_fraction_programmed_trimmed either way."""
    programmed = "aware_programmed" if "e2e_acc_aware_programmed" in metrics else "programmed"
    return {"cotrained_trimmed": "recovered_fraction_cotrained_trimmed",
            f"{programmed}_trimmed": "recovered_fraction_programmed_trimmed"}


def trimmed_recovery(metrics: dict) -> dict:
    """The recovered fractions of the trimmed scenarios the parent's metrics hold (each only
    when defined: chip_metrics.recovered_fraction)."""
    from pipeline.hardware import chip_metrics
    out = {}
    for scenario, key in trimmed_recovery_names(metrics).items():
        if f"e2e_acc_{scenario}" in metrics:
            value, _ = chip_metrics.recovered_fraction(metrics, "", scenario=scenario)
            if value is not None:
                out[key] = value
    return out


def _recovery(metrics: dict, chip_rounds: dict) -> dict:
    """recovered_fraction (and _tmax, _insitu, split and loop ones) from the parent's metrics,
    each with a tag saying why it is or is not defined."""
    import mlflow

    from pipeline.hardware import chip_metrics
    from pipeline.hardware.population import split_recovery
    out = {}
    for suffix in ("", "_tmax"):
        value, why = chip_metrics.recovered_fraction(metrics, suffix)
        mlflow.set_tag(f"{TAG}recovered_fraction{suffix}", why if value is None else f"defined ({why})")
        if value is not None:
            out[f"recovered_fraction{suffix}"] = value
        if f"e2e_acc_insitu{suffix}" in metrics:
            value, why = chip_metrics.recovered_fraction(metrics, suffix, scenario="insitu")
            mlflow.set_tag(f"{TAG}recovered_fraction_insitu{suffix}", why if value is None else f"defined ({why})")
            if value is not None:
                out[f"recovered_fraction_insitu{suffix}"] = value
    out.update(trimmed_recovery(metrics))
    out.update(split_recovery(metrics))
    value, why = chip_metrics.recovered_fraction_loop(metrics, list(chip_rounds.items()))
    mlflow.set_tag(f"{TAG}recovered_fraction_loop", why if value is None else "defined")
    if value is not None:
        out["recovered_fraction_loop"] = value
    return out


def _hardware_summary(record: RunRecord, root: Path) -> dict:
    """The recovered fractions, and the plot of each scenario's accuracy against the time
    after programming, from the scenario metrics the stages logged on the parent."""
    import mlflow

    from pipeline.flow import plots
    from pipeline.hardware import chip_metrics
    out = _recovery(record.latest(), record.series("round_chip_e2e_accuracy"))
    times = list(record.series("scenario_time_s").values())
    series = {}
    for name, label in chip_metrics.SCENARIO_LABELS.items():
        mean = list(record.series(f"scenario_acc_{name}").values())
        if mean and len(mean) == len(times):
            std = list(record.series(f"scenario_std_{name}").values())
            series[label] = (times, mean, std if len(std) == len(mean) else None)
    if series:
        path = plots.accuracy_vs_time(series, root / "plots" / "accuracy_vs_time.png",
                                      title="end-to-end test accuracy after programming (mean ± spread over chips)")
        mlflow.log_artifact(str(path), artifact_path="plots")
    return out
