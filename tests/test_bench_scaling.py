"""`mixsig bench --scaling`: EP step time against block size (pipeline/commands/bench_scaling.py).
Times are measured, not asserted (the machine is shared); the blocks' sizes are checked
against counts written out by hand, and the fit against data of a known exponent."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.commands.bench_scaling import fit_exponent

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "MLFLOW_TRACKING_URI": "sqlite:////nonexistent/never-used.db"}


def _mixsig(*args):
    return subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)


def dense_conductances(h: int) -> int:
    """150 inputs, their inverted copies and 2 bias sources into h hidden nodes; h hidden nodes
    and 2 bias sources into 20 output nodes (10 differential outputs)."""
    return (2 * 150 + 2) * h + (h + 2) * 20


def lc_conductances(side: int) -> int:
    """4×4 kernels at stride 2, 2 filters: each LC node sees 16 pixels and their inverted
    copies and 2 bias sources; then 32 dense nodes, then 20 outputs."""
    positions = ((side - 4) // 2 + 1) ** 2
    nodes = 2 * positions
    return nodes * (2 * 16 + 2) + (nodes + 2) * 32 + (32 + 2) * 20


def test_the_fit_recovers_a_known_exponent():
    g = np.array([1e3, 4e3, 2e4, 1e5])
    assert fit_exponent(g, 3e-6 * g ** 0.8) == pytest.approx(0.8, abs=1e-12)
    assert fit_exponent([5e3], [0.1]) is None
    assert fit_exponent([5e3, 5e3], [0.1, 0.2]) is None


def test_scaling_reports_each_block_with_its_size():
    out = _mixsig("bench", "--scaling", "--scaling-width", "10", "--scaling-width", "30", "--scaling-size", "8",
                  "--scaling-batches", "1", "--scaling-repeats", "1", "--scaling-ngspice", "2", "--json")
    assert out.returncode == 0, out.stderr
    fams = json.loads(out.stdout)["scaling"]
    dense, lc = fams["dense 150 -> h -> 10"], fams["LC 4x4/2, 2 filters -> 32 -> 10"]
    assert [r["conductances"] for r in dense["rows"]] == [dense_conductances(10), dense_conductances(30)]
    assert [r["free_nodes"] for r in dense["rows"]] == [10 + 20, 30 + 20]
    assert [r["conductances"] for r in lc["rows"]] == [lc_conductances(8)] == [1932]
    assert dense["exponent"] is not None and lc["exponent"] is None
    for r in dense["rows"] + lc["rows"]:
        assert r["s_per_step"] > 0
        assert r["us_per_step_per_conductance"] == pytest.approx(r["s_per_step"] / r["conductances"] * 1e6)
        # one loaded ngspice worker timed on 2 operating points, all of them converged
        assert r["ngspice_nonconverged"] == 0 and r["ngspice_cpu_s_per_sample"] > 0
        assert r["ngspice_samples_per_cpu_s"] == pytest.approx(1.0 / r["ngspice_cpu_s_per_sample"])
    assert dense["ngspice_exponent"] is not None and lc["ngspice_exponent"] is None


def test_the_recorded_sizes():
    """The sizes of experiments/ep_speed.md's scaling table."""
    assert [dense_conductances(h) for h in (50, 800)] == [16140, 257640]
    assert [lc_conductances(s) for s in (8, 28)] == [1932, 23052]


def test_scaling_refuses_a_zero_width_in_one_line():
    out = _mixsig("bench", "--scaling", "--scaling-width", "0")
    assert out.returncode == 2 and "--scaling-width" in out.stderr and "Traceback" not in out.stderr


def test_a_scaling_option_without_scaling_is_refused_in_one_line():
    out = _mixsig("bench", "--plot", "/tmp/never-written.png", "--no-ngspice")
    assert out.returncode == 2 and "--plot" in out.stderr and "--scaling" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
