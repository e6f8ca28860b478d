"""`mixsig bench --lc-pixels` (pipeline/commands/bench_pixels.py). Times are measured, not asserted (the machine is shared); block sizes
are checked against counts written out by hand, the cost ratio against its definition."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.commands.bench_pixels import cost_per_conductance_ratio
from pipeline.errors import OptionError

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "MLFLOW_TRACKING_URI": "sqlite:////nonexistent/never-used.db"}
#: experiments/fashion_pixels_lc.yaml: 13×13 positions × 2 filters, each seeing a 4×4 patch of
#: 2 channels (the ± copies) + 2 bias; 338 nodes + 2 bias → 32; 32 + 2 → 20 outputs
LC_CONDUCTANCES = 13 * 13 * 2 * (4 * 4 * 2 + 2) + (338 + 2) * 32 + (32 + 2) * 20
#: fashion_pixels_dense.yaml: 784 pixels, their inverted copies and 2 bias → 15; 15 + 2 → 20
DENSE_CONDUCTANCES = (2 * 784 + 2) * 15 + (15 + 2) * 20


def _mixsig(*args):
    return subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=600)


def test_the_cost_ratio_is_cpu_time_per_sample_and_conductance():
    lc = {"samples_per_cpu_second": 400.0, "conductances": 23052}
    dense = {"samples_per_cpu_second": 2000.0, "conductances": 23890}
    # 960 samples: LC takes 2.4 s over 23,052 conductances, dense 0.48 s over 23,890
    per_g = (960 / 400.0 / 23052) / (960 / 2000.0 / 23890)
    assert cost_per_conductance_ratio(lc, dense) == pytest.approx(per_g, rel=1e-12)
    assert cost_per_conductance_ratio(dense, dense) == pytest.approx(1.0)


def test_lc_pixels_times_both_config_blocks():
    out = _mixsig("bench", "--lc-pixels", "--lc-samples", 64, "--lc-warmup", 32, "--lc-repeats", 1, "--json")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)["lc_pixels"]
    assert [LC_CONDUCTANCES, DENSE_CONDUCTANCES] == [23052, 23890]
    assert r["fashion_pixels_lc"]["conductances"] == LC_CONDUCTANCES
    assert r["fashion_pixels_dense"]["conductances"] == DENSE_CONDUCTANCES
    assert r["fashion_pixels_lc"]["samples"] == r["fashion_pixels_dense"]["samples"] == 64
    assert r["lc_vs_dense_cost_per_conductance"] == pytest.approx(
        cost_per_conductance_ratio(r["fashion_pixels_lc"], r["fashion_pixels_dense"]))


@pytest.mark.parametrize("args, words", [
    (("--lc-samples", "10", "--no-ngspice"), ("--lc-samples", "--lc-pixels")),
    (("--scaling", "--lc-pixels"), ("--lc-pixels", "--scaling")),
])
def test_bad_mode_options_are_refused_in_one_line(args, words):
    out = _mixsig("bench", *args)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and all(w in out.stderr for w in words)
