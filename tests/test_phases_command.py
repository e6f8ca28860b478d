"""`mixsig phases` (pipeline/system/phase_study.py): the study on the iris config, shortened,
against the cut-short estimate's limits (long phases are EP's, whose cosine to the exact
gradient is 1), and its bad input in one line."""
import json

import pytest

from pipeline.cli import main


def test_phases_on_iris_gives_grids_and_trainings(capsys, tmp_path):
    args = ["phases", "--durations", "20,3000", "--train-durations", "3000", "--pairs", "3000:20", "--steps", "20",
            "--set", "training.epochs=1", "--plot", str(tmp_path / "p.png"), "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["grids"]) == {"initial", "trained"}
    for g in out["grids"].values():
        assert g["ep_cosine"] > 1 - 1e-6
        assert g["cosine"][1][1] > 0.999 and g["cosine"][0][0] < g["cosine"][1][1]   # 3 ns ≈ EP; 20 ps not
    assert [r[:2] for r in out["trained"]] == [pytest.approx([3e-9, 3e-9]), pytest.approx([3e-9, 20e-12])]
    assert all(0 <= a <= 1 for r in out["trained"] for a in r[2:])
    assert (tmp_path / "p.png").stat().st_size > 10_000


@pytest.mark.parametrize("args, text", [(["--pairs", "5"], "--pairs"), (["--durations", "0,5"], "--durations"),
                                        (["experiments/smoke_hw.yaml"], "hardware: section")])
def test_phases_refuses_bad_input_in_one_line(capsys, args, text):
    assert main(["phases", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert text in err and len(err.splitlines()) == 1, err
