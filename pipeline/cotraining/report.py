"""What a co-training's parent run tells a person in the MLflow UI.

The run's description (the tag `mlflow.note.content`, shown as Markdown on the run's page)
says what was run (config, data, encoder, block, hardware, the plan of steps) and, once the
co-training has finished, its headline accuracies and where the plots, the summary and the
per-round metrics are. Per-round figures are metrics with step = round, so the UI draws
each as one line chart; `log_series` adds only the points a metric's history lacks, so a
resumed co-training does not draw them twice.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pathlib import Path

if TYPE_CHECKING:
    from pipeline.config import RootConfig

DESCRIPTION_TAG = "mlflow.note.content"

# plots of the parent run (artifact folder plots/) and what each shows
PLOTS = {
    "accuracy_per_round.png": "test accuracy per round: digital-only, the analog block end to end, the retrained "
                              "encoder on the previous block",
    "e2e_per_round.png": "end-to-end test accuracy after each round and each round's gain",
    "accuracy_vs_time.png": "each scenario's end-to-end accuracy against the time after programming the chips",
}
HEADLINE = {
    "end_to_end_test_accuracy": "end to end (last round)",
    "analog_first_test_accuracy": "first analog block",
    "digital_test_accuracy": "digital-only",
    "baseline_test_accuracy": "same network by backprop",
    "e2e_acc_programmed": "programmed chips",
    "e2e_acc_cotrained": "co-trained on the chips",
}


def _block(cfg: RootConfig) -> str:
    a = cfg.analog
    shape = f"layers {len(a.layers)}" if a.layers else f"hidden {a.hidden}"
    t = cfg.training
    return f"analog block ({shape}) trained by EP on the {t.engine} engine, {t.loss} loss"


def _hardware(cfg: RootConfig) -> str:
    hw = cfg.hardware
    if hw is None:
        return "ideal devices (no `hardware` section)"
    frozen = f", frozen, chip {hw.loop_chip} in the loop" if hw.frozen else ""
    return f"{hw.chips} simulated `{hw.preset}` chip(s), {hw.training} training{frozen}"


def what_was_run(cfg: RootConfig, plan, root) -> str:
    d, data = cfg.digital, cfg.data
    limits = ", ".join(f"{k} {getattr(data, k)}" for k in ("limit_train", "limit_test") if getattr(data, k))
    steps = " → ".join(f"{name} r{rnd}" for name, rnd in plan)
    return "\n".join([
        f"**Co-training `{cfg.name}`**: {cfg.cotrain.rounds} round(s) of input optimisation and "
        f"encoder retraining (`digital.retrain_method: {d.retrain_method}`).",
        "",
        f"- data: `{data.dataset}`" + (f" ({limits})" if limits else ""),
        f"- encoder: `{d.encoder}`, {d.embedding_dim} volts in [{d.v_low}, {d.v_high}] V",
        f"- {_block(cfg)}",
        f"- devices: {_hardware(cfg)}",
        f"- {len(plan)} steps, each a nested run (tags `mixsig.step`, `mixsig.round`): {steps}",
        f"- config: artifact `config.yaml` (and the params); local folder `{root}`",
    ])


def results(metrics: dict, plots: list[str]) -> str:
    lines = ["", "**Results** (test accuracy):", ""]
    lines += [f"- {label}: {metrics[key]:.4f} (`{key}`)" for key, label in HEADLINE.items() if key in metrics]
    per_round = sorted(k for k in metrics if k.startswith("round_"))
    lines += ["", "**Plots** (artifacts, folder `plots/`):", ""]
    lines += [f"- `plots/{name}`" + (f": {PLOTS[name]}" if name in PLOTS else "") for name in plots]
    lines += ["", "**Per round**: the Model metrics / Chart view draws each of these against step = round: "
              + ", ".join(f"`{k}`" for k in per_round) + ". The summary scalars and every round's figures are "
              "also in the artifact `summary.json`."]
    return "\n".join(lines)


def describe(client, run_id: str, cfg: RootConfig, root, plan, metrics: dict | None = None) -> None:
    """Set the parent run's description: what was run and, once finished (`metrics`: the
    parent's metrics as its run shows them), its results and plots."""
    text = what_was_run(cfg, plan, root)
    if metrics is not None:
        plots = sorted(p.name for p in (Path(root) / "plots").glob("*.png"))
        text += "\n" + results(metrics, plots)
    client.set_tag(run_id, DESCRIPTION_TAG, text)


def log_series(client, run_id: str, key: str, values: dict) -> None:
    """Log {step: value} as metric `key` on the run, skipping points its history already holds."""
    import time

    from mlflow.entities import Metric
    have = {(m.step, m.value) for m in client.get_metric_history(run_id, key)}
    now = int(time.time() * 1000)
    new = [Metric(key, float(v), now, int(step)) for step, v in sorted(values.items())
           if (int(step), float(v)) not in have]
    if new:
        client.log_batch(run_id, metrics=new)


def stage_times(client, parent_id: str, record) -> dict:
    """Wall time of every step (`record`: the loop's RunRecord) on the parent:
    stage_seconds_<stage> (step = round) and the totals seconds_<stage> (all rounds) and
    seconds_stages (all steps), returned for the summary."""
    totals: dict = {}
    for name, seconds in record.stage_seconds().items():
        log_series(client, parent_id, f"stage_seconds_{name}", seconds)
        totals[f"seconds_{name}"] = sum(seconds.values())
    if totals:
        totals["seconds_stages"] = sum(totals.values())
    return totals


# MLflow 3's UI shows an experiment in the view its switch at the top left ("GenAI" or
# "Model training") is on: GenAI in a browser that never chose, whatever the experiment.
# A link carrying workflowType=machine_learning opens the runs and their charts.
UI_VIEW = "workflowType=machine_learning"


def ui_link(experiment_id: str, run_id: str | None = None, base: str = "http://127.0.0.1:5000") -> str:
    """The MLflow UI page of an experiment (or of one of its runs), in the model-training view."""
    page = f"#/experiments/{experiment_id}" + (f"/runs/{run_id}" if run_id else "")
    return f"{base.rstrip('/')}/{page}?{UI_VIEW}"


def finished_message(run_id: str, experiment_id: str, metrics: dict, experiment: str, store_uri: str) -> str:
    """What `mixsig cotrain` prints at the end: the headline accuracies (from the parent's
    `metrics`) and where to look."""
    import sys
    shown = [f"{k} = {metrics[k]:.4f}" for k in ("digital_test_accuracy", "analog_first_test_accuracy",
                                                  "end_to_end_test_accuracy", "e2e_acc_programmed",
                                                  "e2e_acc_cotrained") if k in metrics]
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    return (f"\nco-training {run_id} finished" + (": " + ", ".join(shown) if shown else "")
            + f"\ncompare runs with `mixsig compare --experiment {experiment}`, browse them with "
            f"`{mlflow_cli if mlflow_cli.exists() else 'mlflow'} ui --backend-store-uri {store_uri}` "
            f"and open {ui_link(experiment_id, run_id)}")
