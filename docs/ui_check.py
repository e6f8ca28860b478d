"""Check the MLflow UI as a person sees it, in a real browser (headless Chromium).

    .venv/bin/python docs/ui_check.py [--store URI] [--experiment NAME] [--screenshots DIR]

It starts `mlflow server` on the project's tracking store (default: the one `mixsig` uses,
pipeline.runtime.tracking.tracking_uri) on a free port of 127.0.0.1, loads pages with Debian's
`chromium --headless --dump-dom` (the UI is a JavaScript app, so each page gets a virtual
time budget to render) and checks their text, not their pixels:

1. the experiment is tagged a model-training experiment (mlflow.experimentKind);
2. the experiment page at the link `mixsig cotrain` prints shows the runs table (its
   runs by name) and none of the GenAI view ("Evaluation runs", "Token Usage");
3. the co-training parent run's page shows its description: what was run, the plots;
4. the run's charts page lists its metrics (the per-round ones are line charts);
5. for the record, the bare experiment link in a browser that never chose a view.

The experiment defaults to the newest one holding a co-training run. Exit status 0 when
checks 1-4 pass, 1 when one fails, 2 when something is missing (chromium, the store, an
experiment). Chromium is not a dependency of the project: `apt-get install chromium`.
"""
from __future__ import annotations

import argparse
import html.parser
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GENAI_VIEW = ("Evaluation runs", "Token Usage")     # what the GenAI overview of an experiment shows


class _Text(html.parser.HTMLParser):
    """The text a person reads on a page: everything outside script and style elements."""

    def __init__(self):
        super().__init__()
        self.parts, self._skip = [], 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("script", "style")

    def handle_endtag(self, tag):
        self._skip -= tag in ("script", "style") and self._skip > 0

    def handle_data(self, data):
        if not self._skip and data.strip():
            self.parts.append(data.strip())


def page_text(dom: str) -> str:
    parser = _Text()
    parser.feed(dom)
    return " | ".join(parser.parts)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(store: str, port: int, folder: Path, timeout: float = 240.0) -> subprocess.Popen:
    """`mlflow server` on 127.0.0.1:port, one worker, once /health answers."""
    log = open(folder / "mlflow-server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store,
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}; see {folder / 'mlflow-server.log'}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(1)
    stop_server(proc)
    raise RuntimeError(f"mlflow server did not answer on port {port} within {timeout:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def render(chromium: str, url: str, profile: Path, screenshot: Path | None = None, budget_ms: int = 20000) -> str:
    """The text of `url` once rendered by headless Chromium (a fresh profile: no remembered view)."""
    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            f"--virtual-time-budget={budget_ms}", "--window-size=1400,1000", f"--user-data-dir={profile}"]
    out = subprocess.run(base + ["--dump-dom", url], capture_output=True, text=True, timeout=180)
    if screenshot is not None:
        subprocess.run(base + [f"--screenshot={screenshot}", url], capture_output=True, timeout=180)
    return page_text(out.stdout)


def pick(client, name: str | None):
    """(experiment, newest co-training parent run or None)."""
    if name:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise LookupError(f"no experiment {name!r} in the store")
        exps = [exp]
    else:
        exps = sorted(client.search_experiments(), key=lambda e: e.creation_time or 0, reverse=True)
    for exp in exps:
        runs = client.search_runs([exp.experiment_id], filter_string="tags.`mixsig.stage` = 'cotrain'",
                                  order_by=["attributes.start_time DESC"], max_results=1)
        if runs or name:
            return exp, (runs[0] if runs else None)
    raise LookupError("no experiment with a co-training run in the store; give --experiment")


def checks(client, chromium: str, base: str, exp, parent, folder: Path, shots: Path | None) -> list:
    """[(passed or None for a note, what, detail)] of the checks listed in the module docstring."""
    from pipeline.cotraining.report import ui_link
    from pipeline.runtime.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG
    shot = (lambda name: shots / name) if shots else (lambda name: None)
    kind = exp.tags.get(EXPERIMENT_KIND_TAG)
    out = [(kind == EXPERIMENT_KIND, f"experiment {exp.name!r} tag {EXPERIMENT_KIND_TAG}", repr(kind))]
    text = render(chromium, ui_link(exp.experiment_id, base=base), folder / "p1", shot("experiment.png"))
    top = [r for r in client.search_runs([exp.experiment_id], max_results=50)
           if "mlflow.parentRunId" not in r.data.tags]          # the table lists nested runs under these
    names = [r.info.run_name for r in top[:5]]
    shown = [n for n in names if n and n in text]
    genai = [w for w in GENAI_VIEW if w in text]
    out.append((bool(shown) and "Runs" in text and not genai, "experiment page (the printed link): runs table",
                f"runs shown {shown}, GenAI words {genai}; page: {text[:300]}"))
    if parent is None:
        out.append((None, "no co-training run: its page is not checked", ""))
    else:
        link = ui_link(exp.experiment_id, parent.info.run_id, base=base)
        text = render(chromium, link, folder / "p2", shot("run.png"))
        wanted = ["Description", "Co-training", "Results", "Plots", "plots/accuracy_per_round.png"]
        missing = [w for w in wanted if w not in text]
        out.append((not missing, "co-training run page: description with what was run and the plots",
                    f"missing {missing}; page: {text[:300]}"))
        text = render(chromium, link.replace("?", "/model-metrics?"), folder / "p3", shot("charts.png"))
        count = len(parent.data.metrics)
        out.append((f"Model metrics | ({count})" in text, f"run charts page: Model metrics ({count})",
                    f"page: {text[:300]}"))
    text = render(chromium, f"{base}/#/experiments/{exp.experiment_id}", folder / "p4", shot("bare.png"))
    view = "GenAI overview" if any(w in text for w in GENAI_VIEW) else "runs" if "Runs" in text else "other"
    out.append((None, "bare experiment link in a fresh browser opens on", view))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", help="tracking store URI (default: the one mixsig uses here)")
    ap.add_argument("--experiment", help="experiment name (default: the newest with a co-training run)")
    ap.add_argument("--screenshots", type=Path, help="also save a PNG of each page into this folder")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = ap.parse_args(argv)
    if shutil.which(args.chromium) is None:
        print(f"error: {args.chromium} not found; install Debian's chromium (apt-get install chromium)", file=sys.stderr)
        return 2
    from mlflow.tracking import MlflowClient

    from pipeline.runtime.tracking import tracking_uri
    store = args.store or tracking_uri()
    try:
        exp, parent = pick(MlflowClient(store), args.experiment)
    except LookupError as exc:
        print(f"error: {store}: {exc}", file=sys.stderr)
        return 2
    if args.screenshots:
        args.screenshots.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mixsig-ui-") as tmp:
        port = free_port()
        server = start_server(store, port, Path(tmp))
        try:
            results = checks(MlflowClient(store), args.chromium, f"http://127.0.0.1:{port}", exp, parent,
                             Path(tmp), args.screenshots)
        finally:
            stop_server(server)
    for passed, what, detail in results:
        mark = {True: "ok  ", False: "FAIL", None: "note"}[passed]
        print(f"{mark} {what}" + (f": {detail}" if detail and passed is not True else ""))
    return 1 if any(p is False for p, _, _ in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
