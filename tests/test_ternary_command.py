"""`mixsig ternary` (pipeline/hardware/pair_study.py) shortened on iris: every row, the pair
rows trained in the loop (pairs rewritten), and a config that names its own devices refused."""
import json

import numpy as np

from pipeline.cli import main


def test_ternary_rows_on_iris(tmp_path, capsys):
    out = tmp_path / "t.json"
    assert main(["ternary", "--set", "training.epochs=2", "--chips", "2", "--output", str(out)]) == 0
    rep = json.loads(out.read_text())
    rows = rep["result"]
    assert rep["task"] == "iris" and rep["chips"] == 2
    assert list(rows) == ["continuous", "ternary (programmed)", "4-level", "ternary", "binary"]
    assert [len(rows[k]["test"]) for k in rows] == [1, 2, 1, 2, 2]
    assert all(0.0 <= a <= 1.0 for r in rows.values() for a in r["test"])
    assert all(n > 0 for n in rows["ternary"]["reprogrammed_pairs"])       # two epochs move ternary pairs
    # the printed table is the JSON's means
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("ternary  "))
    assert f"{100 * np.mean(rows['ternary']['test']):5.1f}" in line


def test_ternary_refuses_a_config_with_its_own_devices(capsys):
    assert main(["ternary", "experiments/smoke_hw.yaml"]) == 2
    err = capsys.readouterr().err.strip()
    assert "has a hardware: section" in err and len(err.splitlines()) == 1
