"""Using a trained system, on the shared smoke co-training (tests/conftest.py): `mixsig predict`
against the accuracy the evaluate stage logged; the MLflow model (`mlflow.pyfunc.load_model`,
`mlflow models serve` over HTTP, `mlflow models predict`) against `mixsig predict`; chips,
`--register` and bad input."""
from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.test_pipeline_smoke import FASHION, SMOKE, _env, children, client_for, mixsig

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (FASHION / "train-images-idx3-ubyte.gz").is_file(),
                                 reason="Fashion-MNIST not available")]

MLFLOW = str(Path(sys.executable).with_name("mlflow"))
def _mlflow_env(tmp: Path) -> dict:
    """The smoke store, and the virtual environment's bin/ on PATH: `mlflow models serve` starts
    `uvicorn` from there."""
    env = _env(tmp)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


HW = ["--set", "hardware.preset=pcm", "--set", "hardware.chips=2", "--set", "hardware.times=[0, 86400]"]


def csv_of(text: str):
    import pandas as pd
    return pd.read_csv(io.StringIO(text))


def stage_run(client, parent, stage: str, rnd: int | None = None):
    runs = [r for r in children(client, parent) if r.data.tags.get("mixsig.stage") == stage
            and (rnd is None or r.data.tags.get("mixsig.round") == str(rnd))]
    return runs[-1]


@pytest.fixture(scope="module")
def served(smoke, tmp_path_factory):
    """The smoke run, its evaluate run, and its test slice saved as .npy (+ labels)."""
    from pipeline.config import load_config
    from pipeline.data import load_dataset
    tmp, client, parent = smoke
    cfg = load_config(SMOKE)
    ds = load_dataset(cfg.data, seed=cfg.seed)
    folder = tmp_path_factory.mktemp("serving")
    np.save(folder / "test.npy", ds.x_test)
    return tmp, client, parent, stage_run(client, parent, "evaluate"), folder, ds


@pytest.fixture(scope="module")
def predicted(served):
    """`mixsig predict PARENT test.npy` as a DataFrame."""
    tmp, client, parent, ev, folder, ds = served
    proc = mixsig(tmp, "predict", parent.info.run_id[:8], folder / "test.npy", "-q")
    return csv_of(proc.stdout)


def test_predict_gives_the_accuracy_evaluate_logged(served, predicted):
    tmp, client, parent, ev, folder, ds = served
    assert list(predicted.columns) == ["name", "class", "class_name"] + [f"score_{k}" for k in range(10)]
    assert len(predicted) == len(ds.y_test) == 200
    assert predicted["name"].tolist() == list(range(200))
    scores = predicted[[f"score_{k}" for k in range(10)]].to_numpy()
    assert np.array_equal(predicted["class"].to_numpy(), scores.argmax(1))
    from pipeline.data import FASHION_CLASSES
    assert predicted["class_name"].tolist() == [FASHION_CLASSES[c] for c in predicted["class"]]
    accuracy = float((predicted["class"].to_numpy() == ds.y_test).mean())
    assert accuracy == pytest.approx(ev.data.metrics["end_to_end_test_accuracy"], abs=1e-12)


def test_png_folder_and_idx_file_give_the_same_classes(served, predicted):
    import gzip
    import struct

    from PIL import Image
    tmp, client, parent, ev, folder, ds = served
    pngs = folder / "pngs"
    pngs.mkdir()
    for i in range(12):
        Image.fromarray(ds.x_test[i]).save(pngs / f"img{i:02d}.png")
    out = folder / "pngs.csv"
    mixsig(tmp, "predict", ev.info.run_id, pngs, "-o", out, "-q")
    got = csv_of(out.read_text())
    assert got["name"].tolist() == [f"img{i:02d}.png" for i in range(12)]
    assert np.array_equal(got["class"].to_numpy(), predicted["class"].to_numpy()[:12])
    idx = folder / "test-images-idx3-ubyte.gz"
    idx.write_bytes(gzip.compress(struct.pack(">IIII", 2051, 12, 28, 28) + ds.x_test[:12].tobytes()))
    got = csv_of(mixsig(tmp, "predict", ev.info.run_id, idx, "-q").stdout)
    assert np.array_equal(got["class"].to_numpy(), predicted["class"].to_numpy()[:12])


def test_ngspice_answer_agrees_with_the_native_one(served, predicted):
    """Two images solved by ngspice, an independent simulator: the same classes, and output
    voltages within 1 µV of the native solver's."""
    tmp, client, parent, ev, folder, ds = served
    np.save(folder / "two.npy", ds.x_test[:2])
    got = csv_of(mixsig(tmp, "predict", parent.info.run_id, folder / "two.npy", "--engine", "ngspice", "-q").stdout)
    cols = [f"score_{k}" for k in range(10)]
    assert np.array_equal(got["class"].to_numpy(), predicted["class"].to_numpy()[:2])
    np.testing.assert_allclose(got[cols].to_numpy(), predicted[cols].to_numpy()[:2], rtol=0, atol=1e-6)


def test_pyfunc_model_gives_the_classes_of_predict(served, predicted):
    import mlflow
    tmp, client, parent, ev, folder, ds = served
    client_for(tmp)
    for rid in (parent.info.run_id, ev.info.run_id):
        model = mlflow.pyfunc.load_model(f"runs:/{rid}/model")
        out = model.predict(ds.x_test.astype(np.float32))
        assert np.array_equal(out["class"].to_numpy(), predicted["class"].to_numpy())
        np.testing.assert_allclose(out[[f"score_{k}" for k in range(10)]].to_numpy(),
                                   predicted[[f"score_{k}" for k in range(10)]].to_numpy(), rtol=1e-6, atol=1e-8)
    # cotrain --register: the parent's model is version 1 of the name, and gives the same classes
    (version,) = client.search_model_versions("name='smoke-cotrain'")
    assert version.run_id == parent.info.run_id and str(version.version) == "1"
    registered = mlflow.pyfunc.load_model("models:/smoke-cotrain/1").predict(ds.x_test.astype(np.float32))
    assert np.array_equal(registered["class"].to_numpy(), predicted["class"].to_numpy())
    sig = model.metadata.signature
    assert sig.inputs.inputs[0].shape == (-1, 28, 28)
    assert sig.outputs.input_names() == ["class", "class_name"] + [f"score_{k}" for k in range(10)]
    assert {p.name for p in sig.params.params} == {"chip", "time", "engine"}


def test_model_is_code_and_plain_files_not_a_pickle(served):
    import mlflow
    import yaml
    tmp, client, parent, ev, folder, ds = served
    client_for(tmp)
    local = Path(mlflow.artifacts.download_artifacts(f"runs:/{parent.info.run_id}/model", dst_path=str(folder / "m")))
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".cloudpickle"))], files
    flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
    assert flavor["model_code_path"].endswith("model_code.py")
    assert "python_model" not in flavor                          # no pickled PythonModel
    for part in ("artifacts/system.json", "artifacts/analog_model/model.json", "artifacts/analog_model/arrays.npz",
                 "artifacts/encoder/encoder.json", "input_example.json", "serving_input_example.json",
                 "code/pipeline/serving/system.py"):
        assert any(f.endswith(part) for f in files), part


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, payload: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _wait_ready(base: str, proc, timeout: float = 180.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"mlflow models serve exited {proc.returncode}: {proc.stderr.read()[-3000:]}")
        for path in ("/ping", "/health"):
            try:
                with urllib.request.urlopen(base + path, timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
        time.sleep(1.0)
    raise AssertionError(f"mlflow models serve not ready after {timeout:.0f} s")


def test_mlflow_models_serve_over_http(served, predicted):
    tmp, client, parent, ev, folder, ds = served
    port = _free_port()
    proc = subprocess.Popen([MLFLOW, "models", "serve", "-m", f"runs:/{parent.info.run_id}/model", "--env-manager",
                             "local", "-h", "127.0.0.1", "-p", str(port)], cwd=tmp, env=_mlflow_env(tmp),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base, proc)
        status, body = _post(base + "/invocations", {"inputs": ds.x_test[:20].astype(float).tolist()})
        assert status == 200, body
        classes = [row["class"] for row in body["predictions"]]
        assert classes == predicted["class"].tolist()[:20]
        assert [row["class_name"] for row in body["predictions"]] == predicted["class_name"].tolist()[:20]
        status, body = _post(base + "/invocations", {"inputs": ds.x_test[:2].tolist(), "params": {"chip": 0}})
        assert status >= 400 and "no programmed chips" in json.dumps(body), body
        status, body = _post(base + "/invocations", {"inputs": np.zeros((2, 28, 28, 3)).tolist()})
        assert status >= 400, body
    finally:
        _stop(proc)


def _stop(proc) -> None:
    """The server and the workers it started (its own process group)."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def test_mlflow_models_predict_on_a_file(served, predicted):
    tmp, client, parent, ev, folder, ds = served
    src, out = folder / "input.json", folder / "predictions.json"
    src.write_text(json.dumps({"inputs": ds.x_test[:10].astype(float).tolist()}))
    proc = subprocess.run([MLFLOW, "models", "predict", "-m", f"runs:/{ev.info.run_id}/model", "-i", str(src),
                           "-t", "json", "-o", str(out), "--env-manager", "local"], cwd=tmp, env=_mlflow_env(tmp),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    body = json.loads(out.read_text())
    rows = body["predictions"] if isinstance(body, dict) else body
    assert [r["class"] for r in rows] == predicted["class"].tolist()[:10]


@pytest.fixture(scope="module")
def on_chips(served):
    """The smoke block programmed onto 2 PCM chips (program), then evaluated alone with
    --register: (evaluate run, its program run)."""
    tmp, client, parent, ev, folder, ds = served
    ta = stage_run(client, parent, "train-analog", rnd=1)
    mixsig(tmp, "program", SMOKE, "--from-run", ta.info.run_id, *HW, "-q")
    exp = client.get_experiment_by_name("smoke")
    (prog,) = client.search_runs([exp.experiment_id], "tags.`mixsig.stage` = 'program'")
    mixsig(tmp, "evaluate", "--from-run", prog.info.run_id, "--set", "baseline.enabled=false",
           "--register", "smoke-system", "-q")
    runs = client.search_runs([exp.experiment_id], "tags.`mixsig.stage` = 'evaluate'",
                              order_by=["attributes.start_time DESC"])
    return runs[0], prog


def test_chip_reads_and_the_registered_model(served, on_chips):
    import mlflow
    tmp, client, parent, ev, folder, ds = served
    ev_hw, prog = on_chips
    assert "chip_acc_mean_t0" in ev_hw.data.metrics
    (version,) = client.search_model_versions("name='smoke-system'")
    assert version.run_id == ev_hw.info.run_id
    rid = ev_hw.info.run_id
    day = mixsig(tmp, "predict", rid, folder / "test.npy", "--chip", "1", "--time", "86400", "-q").stdout
    again = mixsig(tmp, "predict", rid, folder / "test.npy", "--chip", "1", "--time", "86400", "-q").stdout
    assert day == again                          # the chip's read noise is seeded by the chip
    day = csv_of(day)
    # the chip at a day against the accuracy the program stage measured on it (its own read-noise
    # draws: equal up to a few samples of 200)
    logged = [m.value for m in client.get_metric_history(prog.info.run_id, "chip_acc_chip1") if m.step == 1]
    accuracy = float((day["class"].to_numpy() == ds.y_test).mean())
    assert abs(accuracy - logged[-1]) <= 0.03, (accuracy, logged)
    client_for(tmp)
    model = mlflow.pyfunc.load_model("models:/smoke-system/1")
    out = model.predict(ds.x_test.astype(np.float32), params={"chip": 1, "time": 86400.0})
    assert np.array_equal(out["class"].to_numpy(), day["class"].to_numpy())


@pytest.mark.parametrize("args, words", [
    (["--chip", "2"], "chip 2: the system of run {ev} has 2 chip(s), numbered 0..1"),
    (["--chip", "0", "--time", "-5"], "time -5 s: before programming"),
    (["--time", "60"], "needs a chip"),
])
def test_chip_requests_refused(served, on_chips, args, words):
    tmp, client, parent, ev, folder, ds = served
    ev_hw, _ = on_chips
    out = folder / "never.csv"
    p = mixsig(tmp, "predict", ev_hw.info.run_id, folder / "test.npy", *args, "-o", out, check=False)
    err = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(err) == 1, p.stderr[-1500:]
    assert err[0].startswith("error: ") and words.format(ev=ev_hw.info.run_id) in err[0], err
    assert not out.exists()


def test_runs_without_a_trained_block_refused(served):
    tmp, client, parent, ev, folder, ds = served
    td = stage_run(client, parent, "train-digital")
    out = folder / "never.csv"
    p = mixsig(tmp, "predict", td.info.run_id, folder / "test.npy", "-o", out, check=False)
    assert p.returncode == 2 and f"run {td.info.run_id} is a train-digital run" in p.stderr, p.stderr[-1500:]
    assert len(p.stderr.strip().splitlines()) == 1 and not out.exists()
    p = mixsig(tmp, "predict", parent.info.run_id, folder / "test.npy", "--chip", "0", check=False)
    assert p.returncode == 2 and "has no programmed chips" in p.stderr
