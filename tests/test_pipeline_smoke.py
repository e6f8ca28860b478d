"""End to end through the CLI: `mixsig cotrain experiments/smoke.yaml` (parent run, nested
stage runs with tags, metrics, artifacts), a co-training killed (SIGKILL) in the middle of
a stage and resumed, stage commands with --from-run, bad inputs rejected before any work,
`mixsig compare`."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "experiments" / "smoke.yaml"
FASHION = Path(os.environ.get("MIXSIG_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (FASHION / "train-images-idx3-ubyte.gz").is_file(),
                                 reason="Fashion-MNIST not available")]

STAGE_ORDER = ["train-digital", "embed", "train-analog", "optimize-inputs", "retrain-digital", "embed",
               "train-analog", "evaluate"]


def _env(tmp: Path) -> dict:
    return dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlflow.db'}", PYTHONPATH=str(ROOT),
                TF_CPP_MIN_LOG_LEVEL="3")


def mixsig(tmp: Path, *args, check=True):
    proc = subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], cwd=tmp, env=_env(tmp),
                          capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"mixsig {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def client_for(tmp: Path):
    import mlflow
    from mlflow.tracking import MlflowClient
    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
    return MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")


def children(client, parent):
    runs = client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    return sorted(runs, key=lambda r: r.info.start_time)


def artifact_paths(client, run_id, path=None) -> set:
    out = set()
    for f in client.list_artifacts(run_id, path):
        out |= artifact_paths(client, run_id, f.path) if f.is_dir else {f.path}
    return out


def test_cotrain_runs_tags_metrics_artifacts(smoke):
    tmp, client, parent = smoke
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["mixsig.status"] == "finished"
    assert parent.data.params["analog.hidden"] == "16" and parent.data.params["digital.encoder"] == "mlp"
    kids = children(client, parent)
    assert [k.data.tags["mixsig.stage"] for k in kids] == STAGE_ORDER
    assert [k.data.tags["mixsig.round"] for k in kids] == ["0", "0", "0", "0", "0", "1", "1", "1"]
    for i, k in enumerate(kids):
        assert k.info.status == "FINISHED"
        assert k.data.tags["mixsig.status"] == "finished"
        assert k.data.tags["mixsig.step"] == str(i)
        assert k.data.tags["mixsig.parent_run_id"] == parent.info.run_id
        assert k.data.params["name"] == "smoke"
        assert "stage_seconds" in k.data.metrics
        assert k.data.metrics["stage_seconds_cpu"] > 0   # process CPU (all threads), may exceed the wall time
    by = {(k.data.tags["mixsig.stage"], k.data.tags["mixsig.round"]): k for k in kids}
    # lineage: each run names the runs holding its inputs and outputs
    ta = by[("train-analog", "1")]
    assert ta.data.tags["mixsig.artifact.embeddings"] == by[("embed", "1")].info.run_id
    assert ta.data.tags["mixsig.artifact.analog"] == ta.info.run_id
    assert by[("embed", "1")].data.tags["mixsig.artifact.encoder"] == by[("retrain-digital", "0")].info.run_id
    # metrics: per-epoch analog metrics, input optimisation, digital, final
    m = by[("train-analog", "0")].data.metrics
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "power_mean", "clipped", "nonconverged",
                "test_accuracy"):
        assert key in m, key
    assert len(client.get_metric_history(ta.info.run_id, "accuracy")) == 1  # epoch 2 of the block continued
    assert client.get_metric_history(ta.info.run_id, "accuracy")[0].step == 2
    io = by[("optimize-inputs", "0")].data.metrics
    for key in ("reached_fraction", "mean_shift", "max_shift", "seconds"):
        assert key in io, key
    assert 0 <= io["reached_fraction"] <= 1
    assert "digital_test_accuracy" in by[("train-digital", "0")].data.metrics
    ev = by[("evaluate", "1")].data.metrics
    for key in ("digital_test_accuracy", "analog_test_accuracy", "end_to_end_test_accuracy", "baseline_test_accuracy",
                "power_mean"):
        assert key in ev, key
    assert ev["baseline_test_accuracy"] > 0.4      # the smoke baseline is well above chance (0.1)
    pm = parent.data.metrics
    for key in ("analog_first_test_accuracy", "end_to_end_test_accuracy", "digital_test_accuracy",
                "baseline_test_accuracy", "round_inputopt_reached_fraction"):
        assert key in pm, key
    steps = [x.step for x in client.get_metric_history(parent.info.run_id, "round_analog_test_accuracy")]
    assert sorted(steps) == [0, 1]
    # artifacts
    assert {"encoder/encoder.json", "config.yaml", "metrics.json"} <= artifact_paths(client, by[("train-digital", "0")].info.run_id)
    assert "embeddings/embeddings.npz" in artifact_paths(client, by[("embed", "0")].info.run_id)
    arts = artifact_paths(client, ta.info.run_id)
    assert {"analog_model/model.json", "analog_model/arrays.npz", "plots/learning_curves.png",
            "plots/histograms.png"} <= arts
    assert "netlist/analog_block.cir" in arts
    assert "targets/targets.npz" in artifact_paths(client, by[("optimize-inputs", "0")].info.run_id)
    assert "encoder/encoder.json" in artifact_paths(client, by[("retrain-digital", "0")].info.run_id)
    # retrain-digital outputs the retrained encoder's embeddings; the next embed stage hands them on
    assert "embeddings/embeddings.npz" in artifact_paths(client, by[("retrain-digital", "0")].info.run_id)
    assert by[("embed", "0")].data.metrics["embed_reused"] == 0.0
    assert by[("embed", "1")].data.metrics["embed_reused"] == 1.0
    assert {"plots/accuracy_per_round.png", "config.yaml", "summary.json"} <= artifact_paths(client, parent.info.run_id)
    # the local working folder mirrors the steps
    assert (tmp / "runs" / parent.info.run_id / "07-evaluate-r1" / "metrics.json").is_file()


def test_parent_run_per_round_metrics_and_description_in_the_ui(smoke):
    """Per-round figures are one metric with one point per round (a line chart in the UI),
    next to the summary scalars; the parent's description says what ran and where the plots are."""
    tmp, client, parent = smoke
    exp = client.get_experiment(parent.info.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    per_round = [k for k in parent.data.metrics if k.startswith("round_")]
    assert {"round_e2e_accuracy", "round_analog_test_accuracy", "round_digital_test_accuracy"} <= set(per_round)
    for key in per_round:
        steps = [m.step for m in client.get_metric_history(parent.info.run_id, key)]
        assert len(steps) == len(set(steps)) and set(steps) <= {0, 1}, (key, steps)
    assert [m.step for m in sorted(client.get_metric_history(parent.info.run_id, "round_e2e_accuracy"),
                                   key=lambda m: m.step)] == [0, 1]
    assert {"end_to_end_test_accuracy", "analog_first_test_accuracy", "rounds_gain_total"} <= set(parent.data.metrics)
    text = parent.data.tags["mlflow.note.content"]
    assert text.startswith("**Co-training `smoke`**") and "**Results**" in text
    assert "`plots/accuracy_per_round.png`" in text and "`plots/e2e_per_round.png`" in text
    assert "`round_e2e_accuracy`" in text


def test_stage_command_from_run_and_compare(smoke):
    tmp, client, parent = smoke
    kids = children(client, parent)
    embed = [k for k in kids if k.data.tags["mixsig.stage"] == "embed"][-1]
    analog = [k for k in kids if k.data.tags["mixsig.stage"] == "train-analog"][-1]
    # optimize-inputs standalone, config taken from the run, analog from --input
    proc = mixsig(tmp, "optimize-inputs", "--from-run", embed.info.run_id, "--input",
                  f"analog={analog.info.run_id}", "--set", "input_optimization.steps=3", "-q")
    assert "optimize-inputs run" in proc.stdout
    exp = client.get_experiment_by_name("smoke")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`mixsig.stage` = 'optimize-inputs'")
    standalone = [r for r in runs if "mixsig.parent_run_id" not in r.data.tags]
    assert len(standalone) == 1 and standalone[0].data.params["input_optimization.steps"] == "3"
    assert standalone[0].data.tags["mixsig.round"] == "1"
    proc = mixsig(tmp, "compare", "--experiment", "smoke", "--filter", "params.analog.gain = '4.0'",
                  "--output", "cmp.png")
    assert parent.info.run_id[:8] in proc.stdout and "end_to_end_test_accuracy" in proc.stdout
    assert (tmp / "cmp.png").stat().st_size > 1000


def _run_count(client, exp_name):
    exp = client.get_experiment_by_name(exp_name)
    return len(client.search_runs([exp.experiment_id])) if exp else 0


def test_bad_inputs_fail_before_work(smoke, tmp_path):
    tmp, client, parent = smoke
    before = _run_count(client, "smoke")
    # a run id that does not exist
    p = mixsig(tmp, "embed", SMOKE, "--from-run", "0123456789abcdef0123456789abcdef", check=False)
    assert p.returncode == 2 and "error:" in p.stderr and "0123456789abcdef0123456789abcdef" in p.stderr
    assert "does not exist" in p.stderr
    # a run of another experiment
    other = tmp_path / "other.yaml"
    other.write_text(SMOKE.read_text().replace("name: smoke", "name: other"))
    kid = children(client, parent)[0]
    p = mixsig(tmp, "embed", other, "--from-run", kid.info.run_id, check=False)
    assert p.returncode == 2 and "belongs to experiment 'smoke'" in p.stderr
    # a config naming a missing stage input
    missing = tmp_path / "missing.yaml"
    missing.write_text(SMOKE.read_text() + "inputs:\n  encoder: ./no/such/encoder\n")
    p = mixsig(tmp, "embed", missing, check=False)
    assert p.returncode == 2 and "encoder" in p.stderr and "does not exist" in p.stderr
    p = mixsig(tmp, "train-analog", SMOKE, check=False)
    assert p.returncode == 2 and "missing input 'embeddings'" in p.stderr
    # an encoder whose width does not match the analog block
    from analog.builders import build_dense_network
    wrong = build_dense_network(7, 10, hidden=(4,))
    wrong.compile("mse", "adam")
    wrong.save(tmp_path / "wrong_block")
    analog_r1 = [k for k in children(client, parent) if k.data.tags["mixsig.stage"] == "train-analog"][-1]
    p = mixsig(tmp, "evaluate", SMOKE, "--from-run", analog_r1.info.run_id, "--input",
               f"analog={tmp_path / 'wrong_block'}", check=False)
    assert p.returncode == 2 and "width" in p.stderr and "24" in p.stderr and "7" in p.stderr, p.stderr
    # a plug-in encoder that does not import, or breaks the contract
    for spec, words in (("tests.no_such_module:factory", ["tests.no_such_module"]),
                        ("tests.plugin_encoders:out_of_range", ["digital.encoder", "out_of_range", "out of range", "[-1, 1]"]),
                        ("tests.plugin_encoders:broken", ["digital.encoder", "RuntimeError", "the plug-in's own bug"])):
        bad = tmp_path / "bad_encoder.yaml"
        bad.write_text(SMOKE.read_text().replace("encoder: mlp", f'encoder: "{spec}"')
                       .replace("params: {hidden: [64], dropout: 0.0}", "params: {}"))
        for cmd in ("cotrain", "train-digital"):
            p = mixsig(tmp, cmd, bad, check=False)
            assert p.returncode == 2 and all(w in p.stderr for w in words), (cmd, spec, p.stderr)
    # a config whose embedding width is not that of the stage's inputs (24 wide)
    embed_r0 = [k for k in children(client, parent) if k.data.tags["mixsig.stage"] == "embed"][0]
    p = mixsig(tmp, "train-analog", SMOKE, "--from-run", embed_r0.info.run_id, "--set", "digital.embedding_dim=30",
               check=False)
    assert p.returncode == 2 and "digital.embedding_dim is 30" in p.stderr and "24 wide" in p.stderr, p.stderr
    p = mixsig(tmp, "train-analog", SMOKE, "--from-run", embed_r0.info.run_id, "--round", "-1", check=False)
    assert p.returncode == 2 and "negative" in p.stderr
    # resume of something that is not a co-training
    p = mixsig(tmp, "cotrain", "--resume", kid.info.run_id, check=False)
    assert p.returncode == 2 and "not a co-training" in p.stderr
    assert _run_count(client, "smoke") == before     # no run was created by any of these
    assert _run_count(client, "other") == 0


def test_resume_of_a_finished_cotrain_does_nothing(smoke):
    tmp, client, parent = smoke
    before = len(children(client, parent))
    proc = mixsig(tmp, "cotrain", "--resume", parent.info.run_id)
    assert "nothing to do" in proc.stdout
    assert len(children(client, parent)) == before


def _start_and_kill(tmp: Path, args, when: str, timeout: float = 240) -> str:
    """Start `mixsig *args`, SIGKILL it (its whole process group) as soon as a line of its
    output contains `when`; return the output seen until then."""
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", *map(str, args)], cwd=tmp, env=_env(tmp),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    watchdog = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
    watchdog.start()
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if when in line:
                os.killpg(proc.pid, signal.SIGKILL)
                break
        proc.wait(30)
    finally:
        watchdog.cancel()
    out = "".join(seen)
    assert proc.returncode == -signal.SIGKILL and when in out, out[-3000:]
    return out


def test_killed_mid_stage_then_resumed(tmp_path):
    """A real crash: the co-training process is killed with SIGKILL while train-analog is
    training (its run exists and is RUNNING), its local folder is lost too; `--resume`
    marks the orphaned run killed, skips the finished steps (taking their outputs from
    MLflow), reruns train-analog and the rest, and finishes the parent."""
    out = _start_and_kill(tmp_path, ["cotrain", SMOKE, "--set", "cotrain.rounds=0", "--set", "baseline.enabled=false"],
                          when="[train-analog r0] new analog block")
    parent_id = out.split("co-training ", 1)[1].split()[0]
    client = client_for(tmp_path)
    parent = client.get_run(parent_id)
    assert parent.info.status == "RUNNING" and parent.data.tags["mixsig.status"] == "running"
    # the killed process had recorded itself; it is gone, so the resume below is allowed
    import socket
    assert parent.data.tags["mixsig.host"] == socket.gethostname()
    with pytest.raises(ProcessLookupError):
        os.kill(int(parent.data.tags["mixsig.pid"]), 0)
    crashed = children(client, parent)
    assert [k.data.tags["mixsig.stage"] for k in crashed] == ["train-digital", "embed", "train-analog"]
    assert [k.data.tags["mixsig.status"] for k in crashed] == ["finished", "finished", "running"]
    assert crashed[-1].info.status == "RUNNING"
    shutil.rmtree(tmp_path / "runs")                          # the local folder is gone as well

    proc = mixsig(tmp_path, "cotrain", "--resume", parent_id)
    # output to a pipe, as in a job's log: plain lines, no bar redraws, no MLflow download bars
    assert "\r" not in proc.stdout + proc.stderr and "Downloading artifacts" not in proc.stderr, proc.stderr[-2000:]
    skipped = re.findall(r"^step \d+/4 (\S+) r0: finished in run \w+, skipped$", proc.stdout, re.M)
    assert skipped == ["train-digital", "embed"], proc.stdout
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["mixsig.status"] == "finished"
    after = children(client, parent)
    killed = client.get_run(crashed[-1].info.run_id)
    assert killed.info.status == "KILLED" and killed.data.tags["mixsig.status"] == "killed"
    finished = [k for k in after if k.data.tags["mixsig.status"] == "finished"]
    assert [(k.data.tags["mixsig.step"], k.data.tags["mixsig.stage"]) for k in finished] == \
        [("0", "train-digital"), ("1", "embed"), ("2", "train-analog"), ("3", "evaluate")]
    assert len(after) == 5                                    # the 4 steps + the killed attempt
    embed, analog = finished[1], finished[2]
    assert analog.info.run_id != killed.info.run_id
    assert analog.data.tags["mixsig.artifact.embeddings"] == embed.info.run_id
    assert finished[3].data.tags["mixsig.artifact.analog"] == analog.info.run_id
    assert 0.0 <= finished[3].data.metrics["end_to_end_test_accuracy"] <= 1.0
    assert "end_to_end_test_accuracy" in parent.data.metrics
    # the rerun stage's input was downloaded from the finished embed run's artifacts
    assert (tmp_path / "runs" / parent_id / "01-embed-r0" / "embeddings" / "embeddings.npz").is_file()


def test_train_analog_tabular(tmp_path):
    proc = mixsig(tmp_path, "train-analog", ROOT / "experiments" / "iris.yaml", "--set", "training.epochs=2", "-q")
    client = client_for(tmp_path)
    exp = client.get_experiment_by_name("iris")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.tags["mixsig.stage"] == "train-analog" and run.data.tags["mixsig.status"] == "finished"
    assert run.data.params["training.epochs"] == "2"
    assert len(client.get_metric_history(run.info.run_id, "val_accuracy")) == 2
    assert "test_accuracy" in run.data.metrics and "test_accuracy" in proc.stdout
    assert "analog_model/model.json" in artifact_paths(client, run.info.run_id)
