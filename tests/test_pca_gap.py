"""experiments/pca_gap.py (issue 13 part 5): one EP ablation per call on saved embeddings,
and its diode-conduction diagnostic against the Shockley law written out here."""
import importlib.util
import json
from pathlib import Path

import numpy as np


def _script(tmp_path, monkeypatch):
    monkeypatch.setenv("PCA_GAP_OUT", str(tmp_path))
    path = Path(__file__).resolve().parents[1] / "experiments" / "pca_gap.py"
    spec = importlib.util.spec_from_file_location("pca_gap_under_test", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fake_embeddings(tmp_path, n_train=300, n_test=100, features=150):
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 0.3, (10, features))
    for split, n in (("train", n_train), ("test", n_test)):
        y = np.arange(n) % 10
        x = np.clip(centers[y] + rng.normal(0, 0.2, (n, features)), -1, 1)
        np.save(tmp_path / f"pca_x_{split}.npy", x)
        np.save(tmp_path / f"y_{split}.npy", y)


def test_run_records_one_line_and_learns(tmp_path, monkeypatch):
    g = _script(tmp_path, monkeypatch)
    _fake_embeddings(tmp_path)
    res = g.run("t", train=None, epochs=2, batch=20, loss="cross_entropy", temperature=0.1)
    assert res["test_acc"] > 0.5 and res["train_n"] == 300 and len(res["test_per_epoch"]) == 2
    line = json.loads((tmp_path / "results.jsonl").read_text().splitlines()[-1])
    assert line["settings"] == {"epochs": 2, "batch": 20, "loss": "cross_entropy", "temperature": 0.1}
    try:
        g.run("bad", train=None, no_such_axis=1)
    except ValueError as exc:
        assert "no_such_axis" in str(exc)
    else:
        raise AssertionError("an unknown setting was accepted")


def test_diode_diagnostic_matches_the_shockley_law(tmp_path, monkeypatch):
    g = _script(tmp_path, monkeypatch)
    p = {**g.DEFAULTS, "up_bias": -0.3, "down_bias": 0.3}
    model = g.build(p, 6)
    x = np.random.default_rng(1).uniform(-2, 2, (50, 6))   # some diodes off, some on, some clamping
    d = g.hidden_diagnostics(model, x)
    # independent: node voltages from the solve, diode conductances from I = IS (exp(u/Vt) − 1)
    c = model.circuit
    sol = model.solve(x)
    hid = c.terminal_voltages(sol.v, sol.src)[:, c.dense[0].out_terms]
    vt = 1.380649e-23 * 300.15 / 1.602176634e-19
    gd = (1e-12 / vt) * (np.exp((hid - p["up_bias"]) / vt) + np.exp((p["down_bias"] - hid) / vt))
    ratio = gd / model.conductances[0].sum(1)[None, :]
    assert 0.1 < d["diode_clamp"] < d["diode_on"] < 0.9
    assert abs(d["diode_on"] - (ratio >= 0.1).mean()) < 1e-12
    assert abs(d["diode_clamp"] - (ratio >= 1.0).mean()) < 1e-12
    assert abs(d["hidden_v_std"] - hid.std()) < 1e-12


def test_saved_conductances_load_back_exactly(tmp_path, monkeypatch):
    """run(save=...) then run(epochs=0, init_from=...): the same circuit, the same test accuracy;
    a surrogate's w (inputs × rows) maps to G = g_min + (g_max − g_min)·w in the circuit's layout."""
    g = _script(tmp_path, monkeypatch)
    _fake_embeddings(tmp_path)
    saved = tmp_path / "g.npz"
    res = g.run("t", train=None, epochs=1, batch=20, loss="cross_entropy", temperature=0.1, save=str(saved))
    back = g.run("t0", train=None, epochs=0, loss="cross_entropy", temperature=0.1, init_from=str(saved))
    assert back["init_acc"] == back["test_acc"] == res["test_acc"]
    assert back["g_stats"] == res["g_stats"]
    w1, w2 = np.full((302, 100), 0.5), np.zeros((102, 20))
    w1[0, 3], w2[100, 7] = 10.0, 2.0
    np.savez(tmp_path / "s.npz", w1=w1, w2=w2)
    G1, G2 = g.surrogate_conductances(tmp_path / "s.npz")
    lo, hi = g.DEFAULTS["g_min"], g.DEFAULTS["g_max"]
    assert G1.shape == (100, 302) and G2.shape == (20, 102)
    assert np.isclose(G1[3, 0], lo + 10 * (hi - lo)) and np.isclose(G1[0, 0], lo + 0.5 * (hi - lo))
    assert np.isclose(G2[7, 100], lo + 2 * (hi - lo)) and np.isclose(G2[0, 0], lo)
