"""Where the split matters (issue 13 parts 4 and 6): the analog block behind digital front
ends of several sizes, each with and without co-training, in one MLflow experiment.

For each front end: one `mixsig train-digital` (the digital-only accuracy and the MACs per
image), then, from that encoder, one `mixsig cotrain` per co-training method (`targets`,
`through-analog`, `both`; each gives the analog block's accuracy after its first training
and the end-to-end accuracy after the rounds) and the control: `cotrain.rounds=0` with the
same total number of EP epochs (training.epochs + rounds × cotrain.analog_epochs), i.e. the
same extra EP epochs and no co-training. Finished runs are found again by their name in the
experiment and not repeated if they were run with the same seed and digital settings (a run
of a config file whose seed or digital section was edited since is not reused; edits to
other sections are not checked), so the script can be stopped and started again, and several
copies with different --only can run side by side. At the end it writes the table
(markdown + JSON) and the plot of end-to-end accuracy against MACs per image, and logs them
to a summary run of the experiment.

    .venv/bin/python experiments/frontends.py                        # everything
    .venv/bin/python experiments/frontends.py --only cnn8 --methods targets,control
    .venv/bin/python experiments/frontends.py --report               # table + plot from finished runs
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MIXSIG = [sys.executable, "-m", "pipeline"]
BASE = ROOT / "experiments" / "frontends.yaml"
TAG = "frontends.name"

# name → (config, --set overrides, label). All share the main job's block and schedule
# (experiments/frontends.yaml) unless the config says otherwise.
FRONT_ENDS = {
    "pca": (BASE, ["digital.encoder=pca", "digital.params={}"], "PCA 150"),
    "cnn4": (BASE, ["digital.params={filters: [4, 8, 16]}"], "CNN 4-8-16"),
    "cnn8": (BASE, ["digital.params={filters: [8, 16, 32]}"], "CNN 8-16-32"),
    "cnn16": (BASE, ["digital.params={filters: [16, 32, 64]}"], "CNN 16-32-64"),
    "cnn32": (BASE, ["digital.params={filters: [32, 64, 128]}"], "CNN 32-64-128 (main job)"),
    "small": (ROOT / "experiments" / "fashion_mnist_small.yaml", [], "small (fashion_mnist_small.yaml)"),
    "ebana": (ROOT / "experiments" / "fashion_mnist_ebana.yaml", [], "EBANA setting (fashion_mnist_ebana.yaml)"),
}
METHODS = ("targets", "through-analog", "both", "control")
# The main job's own figures (experiments/README.md, "Before and after the restructuring",
# 2026-11-26, after a43f769: 2 rounds by targets, no control), used for the 8.4 M-MAC point
# when its co-trainings here were not run (each takes 11-28 min alone on the shared machine).
MAIN_JOB = {"name": "cnn32", "label": "CNN 32-64-128 (main job's own run, 2 rounds)", "macs": 8391936.0,
            "digital": 0.9277, "analog_first": 0.9277, "targets": 0.9261, "reused": True}
NOT_DIFFERENTIABLE = {"pca"}      # through-analog / both refuse a PCA encoder


def client():
    from pipeline.runtime.tracking import setup_mlflow
    setup_mlflow("frontends")
    from mlflow.tracking import MlflowClient
    return MlflowClient()


def front_end_params(name: str, extra_sets=()) -> dict[str, str]:
    """The seed and digital.* settings of front end `name` (retrain_method aside: the methods
    set it), as MLflow logs a run's config: what a finished run must have been run with to
    count as this front end's (a config file edited since, e.g. fashion_mnist_small.yaml,
    makes its old runs stale)."""
    from pipeline.config import flatten, load_config
    config, overrides, _ = FRONT_ENDS[name]
    flat = flatten(load_config(config, [*overrides, *extra_sets]))
    return {k: "" if v is None else str(v) for k, v in flat.items()
            if (k == "seed" or k.startswith("digital.")) and k != "digital.retrain_method"}


def same_settings(run_params: dict, want: dict | None) -> bool:
    """A run's logged params agree with `want`: every key both have is equal, and the two
    have the same digital.params.* keys (a setting the schema added later is not held
    against an older run, an encoder parameter added or removed is)."""
    if want is None:
        return True
    enc = {k for k in (*run_params, *want) if k.startswith("digital.params.")}
    return (all(run_params.get(k) == v for k, v in want.items() if k in run_params)
            and all(k in run_params and k in want for k in enc))


def finished_run(cl, exp_id: str, name: str, want: dict | None = None):
    """The latest finished run tagged frontends.name = name, or co-training parent named so,
    run with the settings `want` (front_end_params) if given."""
    done = "tags.`mixsig.status` = 'finished'"
    for flt in (f"tags.`{TAG}` = '{name}' and {done}",
                f"attributes.run_name = '{name}' and tags.`mixsig.stage` = 'cotrain' and {done}"):
        runs = cl.search_runs([exp_id], filter_string=flt, order_by=["attributes.start_time DESC"], max_results=50)
        for run in runs:
            if same_settings(run.data.params, want):
                return run
    return None


def in_progress(log: Path) -> bool:
    """Another copy of this script runs the command of `log` (its last command has no exit line)."""
    if not log.exists():
        return False
    text = log.read_text()
    return "\n$ mixsig " in text and "[exit " not in text[text.rindex("\n$ mixsig "):]


def run_mixsig(args: list[str], log: Path) -> str:
    """Run a mixsig command, its output to `log`; the run id it printed."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as fh:
        fh.write(f"\n$ mixsig {' '.join(args)}\n")
        fh.flush()
        t0 = time.perf_counter()
        proc = subprocess.run(MIXSIG + args, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
        fh.write(f"[exit {proc.returncode} after {time.perf_counter() - t0:.0f} s]\n")
    text = log.read_text()
    if proc.returncode:
        raise SystemExit(f"frontends: `mixsig {' '.join(args[:2])}` failed (exit {proc.returncode}); see {log}")
    text = text[text.rindex("\n$ mixsig "):]
    ids = re.findall(r"co-training ([0-9a-f]{32})", text) or re.findall(r"\brun ([0-9a-f]{32})", text)
    if not ids:
        raise SystemExit(f"frontends: no run id in {log}")
    return ids[0]


def control_overrides(config: Path, overrides: list[str]) -> list[str]:
    """rounds=0 and the same total EP epochs as the co-training."""
    cfg = yaml.safe_load(config.read_text())
    sets = dict(o.split("=", 1) for o in overrides)
    epochs = int(sets.get("training.epochs", cfg["training"]["epochs"]))
    rounds = int(sets.get("cotrain.rounds", cfg.get("cotrain", {}).get("rounds", 1)))
    extra = sets.get("cotrain.analog_epochs", cfg.get("cotrain", {}).get("analog_epochs")) or epochs
    return ["cotrain.rounds=0", f"training.epochs={epochs + rounds * int(extra)}"]


def run_front_end(cl, exp_id: str, name: str, methods, logdir: Path, extra_sets: list[str]) -> None:
    config, overrides, _ = FRONT_ENDS[name]
    overrides = overrides + ["mlflow.experiment=frontends"] + extra_sets
    sets = [a for o in overrides for a in ("--set", o)]
    want = front_end_params(name, extra_sets)
    enc = finished_run(cl, exp_id, f"{name}/digital", want)
    if enc is None and in_progress(logdir / f"{name}-digital.log"):
        print(f"{name}: its encoder is being trained by another copy of this script; skipped", flush=True)
        return
    if enc is None:
        run_id = run_mixsig(["train-digital", str(config), *sets, "-q"], logdir / f"{name}-digital.log")
        cl.set_tag(run_id, TAG, f"{name}/digital")
        enc_id = run_id
    else:
        enc_id = enc.info.run_id
    for method in methods:
        if method != "control" and name in NOT_DIFFERENTIABLE and method != "targets":
            continue
        tag = f"{name}/{method}"
        if finished_run(cl, exp_id, tag, want) is not None or in_progress(logdir / f"{name}-{method}.log"):
            continue
        more = (control_overrides(config, overrides) if method == "control"
                else [f"digital.retrain_method={method}"])
        args = ["cotrain", str(config), "--from-run", enc_id, "--run-name", tag, *sets,
                *[a for o in more for a in ("--set", o)], "-q"]
        run_id = run_mixsig(args, logdir / f"{name}-{method}.log")
        cl.set_tag(run_id, TAG, tag)


def collect(cl, exp_id: str, names, extra_sets=()) -> list[dict]:
    rows = []
    for name in names:
        want = front_end_params(name, extra_sets)
        enc = finished_run(cl, exp_id, f"{name}/digital", want)
        if enc is None:
            continue
        m = enc.data.metrics
        row = {"name": name, "label": FRONT_ENDS[name][2], "macs": m.get("digital_macs_per_image"),
               "digital": m.get("digital_test_accuracy"), "digital_seconds": m.get("stage_seconds")}
        for method in METHODS:
            run = finished_run(cl, exp_id, f"{name}/{method}", want)
            if run is None:
                continue
            rm = run.data.metrics
            row[method] = rm.get("end_to_end_test_accuracy")
            row[f"{method}_seconds"] = rm.get("cotrain_seconds_this_session")
            row[f"{method}_baseline"] = rm.get("baseline_test_accuracy")
            row[f"{method}_digital_last"] = rm.get("digital_last_test_accuracy")
            if method != "control" and "analog_first" not in row:
                row["analog_first"] = rm.get("analog_first_test_accuracy")
        rows.append(row)
    return rows


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.2f}"


def table(rows: list[dict]) -> str:
    head = ("| front end | MACs/image | digital only | analog, first training | control (same EP epochs) "
            "| targets | through-analog | both | best − control, pp |\n|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        best = max((r[m] for m in METHODS[:3] if r.get(m) is not None), default=None)
        gain = "–" if best is None or r.get("control") is None else f"{100 * (best - r['control']):+.2f}"
        macs = "–" if r.get("macs") is None else f"{r['macs'] / 1e6:.3f} M"
        lines.append(f"| {r['label']} | {macs} | {_pct(r.get('digital'))} | {_pct(r.get('analog_first'))} | "
                     f"{_pct(r.get('control'))} | {_pct(r.get('targets'))} | {_pct(r.get('through-analog'))} | "
                     f"{_pct(r.get('both'))} | {gain} |")
    return head + "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, reference: dict | None = None) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = sorted((r for r in rows if r.get("macs")), key=lambda r: r["macs"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series = [("digital only", "digital", "s:"), ("analog after first training", "analog_first", "^--"),
              ("without co-training (control, same EP epochs)", "control", "o-"),
              ("co-training: targets", "targets", "v"), ("co-training: through-analog", "through-analog", "D"),
              ("co-training: both", "both", "P")]
    for r in rows:
        done = [r[m] for m in METHODS[:3] if r.get(m) is not None]
        r["_best"] = max(done) if done else None
    series.insert(3, ("with co-training (best method run)", "_best", "-"))
    for label, key, style in series:
        pts = [(r["macs"], 100 * r[key]) for r in rows if r.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts), style, label=label, alpha=0.85)
    for r in rows:
        ax.annotate(r["name"], (r["macs"], 100 * (r.get("digital") or 0)), textcoords="offset points",
                    xytext=(0, -12), ha="center", fontsize=7)
    ax.axhline(92, color="grey", lw=0.6, ls=":")
    ax.axvline(0.75e6, color="grey", lw=0.6, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("digital front end, multiply-accumulates per image")
    ax.set_ylabel("Fashion-MNIST test accuracy, %")
    ax.set_title("end-to-end accuracy against the front end's size")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def report(cl, exp_id: str, names, out: Path, extra_sets=()) -> None:
    import mlflow
    rows = collect(cl, exp_id, names, extra_sets)
    if not any(r["name"] == "cnn32" for r in rows) and "cnn32" not in names:
        rows.append(dict(MAIN_JOB))
    rows.sort(key=lambda r: (r["name"] in ("small", "ebana"), r.get("macs") or 0))
    out.mkdir(parents=True, exist_ok=True)
    md = table(rows)
    (out / "frontends_table.md").write_text(md)
    (out / "frontends.json").write_text(json.dumps(rows, indent=2))
    png = plot([r for r in rows if r["name"] != "small" and r["name"] != "ebana"], out / "frontends_accuracy_vs_macs.png")
    print(md)
    with mlflow.start_run(experiment_id=exp_id, run_name="frontends-summary", tags={TAG: "summary"}):
        for r in rows:
            for key in ("digital", "analog_first", "control", *METHODS[:3]):
                if r.get(key) is not None:
                    mlflow.log_metric(f"{r['name']}_{key.replace('-', '_')}", r[key])
        mlflow.log_artifact(str(out / "frontends_table.md"))
        mlflow.log_artifact(str(out / "frontends.json"))
        mlflow.log_artifact(str(png), artifact_path="plots")
    print(f"table and plot in {out}; logged to MLflow experiment 'frontends' (run frontends-summary)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(n for n in FRONT_ENDS if n not in ("cnn32", "small", "ebana")),
                    help=f"comma-separated front ends of {list(FRONT_ENDS)}")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {METHODS}")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra override for every run")
    ap.add_argument("--report", action="store_true", help="only the table and plot from finished runs")
    ap.add_argument("--logs", default=os.environ.get("FRONTENDS_LOGS", "/tmp/frontends"), help="command logs")
    ap.add_argument("--out", default=str(ROOT / "runs" / "frontends"), help="table and plot folder")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [n for n in names if n not in FRONT_ENDS] + [m for m in methods if m not in METHODS]
    if bad:
        ap.error(f"unknown front end or method {bad[0]!r}")
    cl = client()
    exp_id = cl.get_experiment_by_name("frontends").experiment_id
    if not args.report:
        for name in names:
            run_front_end(cl, exp_id, name, methods, Path(args.logs), args.sets)
    report(cl, exp_id, names, Path(args.out), args.sets)


if __name__ == "__main__":
    main()
