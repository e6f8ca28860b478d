"""evaluate with a `transient:` section through the CLI: settling-time and energy metrics,
histograms and the list of unsettled samples for the ideal block and a programmed chip; a
transient too short to settle is counted, never taken as settled; bad transient and
capacitance keys are one-line errors naming the key (exit 2)."""
from __future__ import annotations

import json
import math

import pytest

from tests.test_pipeline_smoke import client_for, mixsig

CONFIG = """name: iris_transient
seed: 0
data: {dataset: iris, test_fraction: 0.2}
analog:
  hidden: [6]
  g_min: 1.0e-7
  g_max: 2.0e-5
  gain: 4.0
  diode: {model: shockley, is: 1.0e-12, up_bias: -0.3, down_bias: 0.3}
training: {loss: mse, beta: 1.0e-7, epochs: 1, batch_size: 8}
baseline: {enabled: false}
hardware: {preset: pcm, chips: 1, times: [0]}
transient: {samples: 6, duration: 2.0e-9, dt: 1.0e-11}
"""


def _run_id(proc, stage: str) -> str:
    return proc.stdout.split(f"{stage} run ", 1)[1].split()[0]


@pytest.fixture(scope="module")
def programmed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("transient")
    (tmp / "cfg.yaml").write_text(CONFIG)
    ta = _run_id(mixsig(tmp, "train-analog", tmp / "cfg.yaml", "-q"), "train-analog")
    prog = _run_id(mixsig(tmp, "program", "--from-run", ta, "-q"), "program")
    return tmp, prog


def test_evaluate_logs_settling_and_energy_of_the_block_and_the_chip(programmed):
    tmp, prog = programmed
    ev = _run_id(mixsig(tmp, "evaluate", "--from-run", prog, "-q"), "evaluate")
    client = client_for(tmp)
    m = client.get_run(ev).data.metrics
    for scope in ("ideal", "chip0"):
        assert m[f"transient_{scope}_samples"] == 6 and m[f"transient_{scope}_unsettled"] == 0
        assert 0 < m[f"transient_{scope}_settle_s_p50"] <= m[f"transient_{scope}_settle_s_p99"] <= 2e-9
        assert m[f"transient_{scope}_energy_j_mean"] > 0
    arts = {a.path for a in client.list_artifacts(ev, "plots")}
    assert {"plots/transient_ideal.png", "plots/transient_chip0.png"} <= arts
    path = client.download_artifacts(ev, "transient_unsettled.json", str(tmp))
    assert json.loads(open(path).read()) == {"ideal": [], "chip0": []}


def test_a_transient_too_short_to_settle_is_counted(programmed):
    tmp, prog = programmed
    ev = _run_id(mixsig(tmp, "evaluate", "--from-run", prog, "-q", "--set", "transient.duration=3.0e-11"), "evaluate")
    client = client_for(tmp)
    m = client.get_run(ev).data.metrics
    assert m["transient_ideal_unsettled"] == 6
    assert math.isnan(m.get("transient_ideal_settle_s_p50", math.nan))     # no settled sample: no figure
    path = client.download_artifacts(ev, "transient_unsettled.json", str(tmp))
    assert json.loads(open(path).read())["ideal"] == list(range(6))


@pytest.mark.parametrize("setting, words", [
    ("transient.dt=2.0e-9", ["transient.dt", "transient.duration"]),
    ("transient.duration=0", ["transient.duration"]),
    ("analog.capacitance.wire_per_cell=0", ["analog.capacitance.wire_per_cell", "> 0"]),
    ("analog.capacitance.amplifier_input=-1.0e-15", ["analog.capacitance.amplifier_input"]),
])
def test_bad_transient_keys_are_one_line_errors(programmed, setting, words):
    tmp, prog = programmed
    p = mixsig(tmp, "evaluate", "--from-run", prog, "--set", setting, check=False)
    assert p.returncode == 2 and p.stderr.startswith("error: ") and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert all(w in p.stderr for w in words), p.stderr
