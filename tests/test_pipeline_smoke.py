"""End to end through the CLI: `mixsig cotrain experiments/smoke.yaml` (parent run, nested
stage runs with tags, metrics, artifacts), `--resume` skipping finished stages, stage
commands with --from-run, bad inputs rejected before any work, `mixsig compare`."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
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


def mixsig(tmp: Path, *args, check=True):
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlflow.db'}", PYTHONPATH=str(ROOT),
               TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], cwd=tmp, env=env,
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


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smoke")
    proc = mixsig(tmp, "cotrain", SMOKE, "-q")
    client = client_for(tmp)
    exp = client.get_experiment_by_name("smoke")
    parents = client.search_runs([exp.experiment_id], filter_string="tags.`mixsig.stage` = 'cotrain'")
    assert len(parents) == 1, proc.stdout
    assert parents[0].info.run_id in proc.stdout          # -q still prints the id --resume needs
    return tmp, client, parents[0]


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
    assert {"plots/accuracy_per_round.png", "config.yaml", "summary.json"} <= artifact_paths(client, parent.info.run_id)
    # the local working folder mirrors the steps
    assert (tmp / "runs" / parent.info.run_id / "07-evaluate-r1" / "metrics.json").is_file()


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
    from analog.model import build_dense_network
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


def test_resume_reruns_only_unfinished(smoke):
    tmp, client, parent = smoke
    kids = children(client, parent)
    last = kids[-1]
    assert last.data.tags["mixsig.stage"] == "evaluate"
    client.set_tag(last.info.run_id, "mixsig.status", "failed")          # as if it had crashed
    shutil.rmtree(tmp / "runs")                                           # and the local folder is gone
    proc = mixsig(tmp, "cotrain", "--resume", parent.info.run_id)
    assert proc.stdout.count("skipped") == len(STAGE_ORDER) - 1, proc.stdout
    after = children(client, parent)
    assert len(after) == len(kids) + 1
    new = [k for k in after if k.info.run_id not in {x.info.run_id for x in kids}]
    assert [k.data.tags["mixsig.stage"] for k in new] == ["evaluate"]
    assert new[0].data.tags["mixsig.status"] == "finished"
    assert client.get_run(parent.info.run_id).data.tags["mixsig.status"] == "finished"
    # inputs of the re-run stage were downloaded from the finished runs' artifacts
    assert (tmp / "runs" / parent.info.run_id / "06-train-analog-r1" / "analog_model" / "model.json").is_file()
    proc = mixsig(tmp, "cotrain", "--resume", parent.info.run_id)
    assert "nothing to do" in proc.stdout


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
