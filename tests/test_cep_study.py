"""`mixsig cep` (analog/cep_study.py): the study's rows against computations made here from
EP, the exact gradient and the C-EP loop themselves, and the command's bad input."""
import json

import numpy as np
import pytest

from analog.cep import cep_gradients, cosine, sgd_update
from analog.cep_study import cep_rows, conducting, ep_rows
from analog.ep import ep_gradients, exact_gradients
from tests.analog_circuits import block, inputs

G_RANGE = (1e-7, 2e-5)


@pytest.fixture(scope="module")
def problem():
    m = block(features=4, hidden=(10,), outputs=3, g=G_RANGE)
    m.compile(loss="mse", optimizer="sgd", beta=1e-6)
    return m, inputs(16, 4, scale=1.0), np.arange(16) % 3


def test_ep_rows_are_eps_cosine_and_the_nudge_grows_with_beta(problem):
    m, x, y = problem
    eng = m.get_engine("native")
    exact = exact_gradients(eng, m.circuit, m.conductances, x, y, m.loss).grads
    ep = ep_gradients(eng, m.circuit, m.conductances, x, y, m.loss, 1e-3, "symmetric").grads
    small, big = ep_rows(m, x, y, [1e-7, 1e-3])
    assert big["cosine"] == pytest.approx(cosine(ep, exact), abs=1e-12)
    assert big["layers"][0] == pytest.approx(cosine([ep[0]], [exact[0]]), abs=1e-12)
    assert small["cosine"] > 0.999999
    # the nudge's displacement is linear in β while it is small (1e-7 → 1e-5: × 100 within 1 %)
    mid = ep_rows(m, x, y, [1e-5])[0]
    assert mid["displacement"] / small["displacement"] == pytest.approx(100, rel=0.01)
    assert conducting(m, eng, m.conductances, x, threshold=-1e9) == 1.0
    assert conducting(m, eng, m.conductances, x, threshold=1e9) == 0.0


def test_cep_rows_match_the_cep_loop_and_the_echo_predictions(problem):
    m, x, y = problem
    before = [g.copy() for g in m.conductances]
    beta, eta, K = 1e-6, 1e-3, 10                       # η/β = 1e3: well inside the series' reach
    row, = cep_rows(m, x, y, beta, [K], [eta], diagnose=True, nudged=True)
    assert all(np.array_equal(a, b) for a, b in zip(before, m.conductances))     # the model is left unchanged
    eng, G = m.get_engine("native"), [g.copy() for g in before]
    bounds = [G_RANGE] * 2
    res = cep_gradients(eng, m.circuit, before, x, y, m.loss, beta, "symmetric", steps=K,
                        update=sgd_update(G, eta, bounds))
    exact = exact_gradients(eng, m.circuit, before, x, y, m.loss).grads
    ep = ep_gradients(eng, m.circuit, before, x, y, m.loss, beta, "symmetric").grads
    assert row["cosine"] == pytest.approx(cosine(res.grads, exact), abs=1e-12)
    dev = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(res.grads, ep)) / sum(np.sum(b ** 2) for b in ep))
    assert row["deviation"] == pytest.approx(dev, rel=1e-9) and 0 < dev < 0.05
    assert row["moved"] == pytest.approx(max(np.abs(a - b).max() for a, b in zip(G, before)) / G_RANGE[1])
    # both linearised predictions reproduce the loop's drift from EP to a few percent here
    assert row["series"] == pytest.approx(dev, rel=0.05) and row["nudged"] == pytest.approx(dev, rel=0.05)
    assert row["kept"] == 16 and row["clipped"] == 0 and 0 < row["eta_rho"] < 1


def test_the_cep_command_prints_json_and_refuses_bad_options(capsys):
    from pipeline.cli import main
    assert main(["cep", "--samples", "8", "--ratios", "1e3", "--steps", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["samples"] == 8 and [r["steps"] for r in out["cep"]] == [2]
    assert out["cep"][0]["eta"] == pytest.approx(1e-2) and out["ep"][0]["beta"] == 1e-5
    for args, text in ((["--betas", "1e-5,-1"], "--betas"), (["--etas", "1", "--ratios", "1"], "--etas and --ratios"),
                       (["--model", "."], "--model and --embeddings")):
        assert main(["cep", *args]) == 2
        err = capsys.readouterr().err
        assert text in err and len(err.strip().splitlines()) == 1, err
