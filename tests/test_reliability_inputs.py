"""Bad input outside the config schema: one line naming the option, file or key, exit code
2, and no run created: --workdir on a file, a block too big for memory (refused from an
estimate before allocation), config files that are folders or binary, compare --metrics of
a metric no run has; run ids accepted by a unique start (compare prints 8 characters)."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import cli

ROOT = Path(__file__).resolve().parents[1]
XOR = ROOT / "experiments" / "xor.yaml"


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    from mlflow.tracking import MlflowClient
    return tmp_path, MlflowClient(uri)


def _error(capsys, argv, *words) -> str:
    assert cli.main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)
    return err


def _n_runs(client) -> int:
    from mlflow.entities import ViewType
    ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    return len(client.search_runs(ids, run_view_type=ViewType.ALL)) if ids else 0


def test_workdir_that_is_a_file_or_cannot_be_made(store, capsys):
    tmp, client = store
    afile = tmp / "afile"
    afile.write_text("x")
    _error(capsys, ["train-analog", XOR, "--workdir", afile], "--workdir", f"{afile} is a file, not a folder")
    _error(capsys, ["cotrain", ROOT / "experiments" / "smoke.yaml", "--workdir", afile / "sub"], "--workdir",
           f"{afile}", "not a folder")
    if Path("/etc/passwd").is_file():
        _error(capsys, ["embed", XOR, "--workdir", "/etc/passwd"], "/etc/passwd is a file")
    assert _n_runs(client) == 0


@pytest.mark.parametrize("argv", [["train-analog", XOR, "--set", "analog.hidden=[200000]"],
                                  ["cotrain", ROOT / "experiments" / "smoke.yaml", "--set", "analog.hidden=[90000, 90000]"],
                                  ["verify", XOR, "--set", "analog.hidden=[200000]"]],
                         ids=["train-analog", "cotrain", "verify"])
def test_a_block_too_big_for_memory_is_refused_before_allocation(store, capsys, argv):
    tmp, client = store
    if argv[0] == "verify":   # verify reads no --set: write the config
        big = tmp / "big.yaml"
        big.write_text(XOR.read_text() + "\n")
        import yaml
        raw = yaml.safe_load(XOR.read_text())
        raw.setdefault("analog", {})["hidden"] = [200000]
        big.write_text(yaml.safe_dump(raw))
        argv = ["verify", big]
    err = _error(capsys, argv, "analog.hidden=", "GiB", "memory")
    # the estimate, recomputed: 16 B per matrix entry over n nodes, 32 B per conductance
    hidden = [200000] if "200000" in err else [90000, 90000]
    n_min = sum(hidden)
    assert int(err.split("GiB")[0].split()[-1]) >= 16 * n_min ** 2 // 2 ** 30
    assert _n_runs(client) == 0


def test_the_memory_estimate_against_a_hand_count(monkeypatch):
    from pipeline.runtime.limits import block_bytes, check_block_size
    # 3 → [4] → 2: 9 nodes, 3·4 + 4·2 = 20 conductances
    assert block_bytes([3, 4, 2]) == 16 * 81 + 32 * 20
    monkeypatch.setenv("MIXSIG_MEMORY_BYTES", str(16 * 81 + 32 * 20))
    check_block_size([4], 3, 2)                       # exactly fits
    with pytest.raises(ValueError, match=r"analog.hidden=\[5\]: a 3→\[5\]→2 analog block"):
        check_block_size([5], 3, 2)


def test_config_that_is_a_folder_or_binary_names_the_file(store, capsys):
    tmp, _ = store
    binary = tmp / "model.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    for cmd in ("train-analog", "cotrain", "config"):
        argv = [cmd, "show"] if cmd == "config" else [cmd]
        _error(capsys, argv + [tmp], str(tmp), "folder")
        _error(capsys, argv + [binary], str(binary))


def test_compare_metrics_nobody_logged(store, capsys):
    tmp, client = store
    from pipeline.runtime.tracking import setup_mlflow
    mlflow = setup_mlflow("cmp")
    with mlflow.start_run(tags={"mixsig.stage": "cotrain"}):
        mlflow.log_metric("end_to_end_test_accuracy", 0.5)
    _error(capsys, ["compare", "--experiment", "cmp", "--metrics", "end_to_end_test_accuracy,nosuch"],
           "--metrics", "nosuch", "none of the 1 runs")
    assert cli.main(["compare", "--experiment", "cmp", "--metrics", "end_to_end_test_accuracy",
                     "--output", str(tmp / "c.png")]) == 0


def test_compare_without_cotrain_runs_suggests_the_stage(store, capsys):
    _, _ = store
    from pipeline.runtime.tracking import setup_mlflow
    mlflow = setup_mlflow("stages-only")
    with mlflow.start_run(tags={"mixsig.stage": "train-analog"}):
        mlflow.log_metric("analog_test_accuracy", 0.5)
    assert cli.main(["compare", "--experiment", "stages-only"]) == 0
    out = capsys.readouterr().out
    assert "no runs match" in out and "--stage train-analog" in out


def test_run_ids_by_unique_prefix(store, capsys, monkeypatch):
    tmp, client = store
    from pipeline.flow import StageInputError, get_run
    from pipeline.runtime.tracking import setup_mlflow
    mlflow = setup_mlflow("ids")
    ids = []
    for _ in range(3):
        with mlflow.start_run(tags={"mixsig.stage": "embed"}) as run:
            ids.append(run.info.run_id)
    for rid in ids:
        assert get_run(rid[:8]).info.run_id == rid
        assert get_run(rid).info.run_id == rid
    with pytest.raises(StageInputError, match="does not exist"):
        get_run("ffffffffffff" if not any(r.startswith("ffffffffffff") for r in ids) else "eeeeeeeeeeee")
    with pytest.raises(StageInputError, match="does not exist"):
        get_run("xyz%")
    # an ambiguous start: two ids that share their first character (try each digit)
    first = [r[0] for r in ids]
    shared = next((c for c in set(first) if first.count(c) > 1), None)
    if shared is None:    # make one: a fourth, fifth ... run until two share a first character
        while shared is None:
            with mlflow.start_run() as run:
                ids.append(run.info.run_id)
            first = [r[0] for r in ids]
            shared = next((c for c in set(first) if first.count(c) > 1), None)
    import pipeline.flow.lineage as lineage
    with pytest.raises(StageInputError, match="does not exist"):
        get_run(shared)                                  # too short to be taken for an id
    monkeypatch.setattr(lineage, "MIN_PREFIX", 1)
    with pytest.raises(StageInputError, match=f"'{shared}' is the start of"):
        get_run(shared)
    # through the CLI: the 8 characters compare prints reach the run
    _error(capsys, ["cotrain", "--resume", ids[0][:8]], f"--resume run {ids[0]} is a embed run")
