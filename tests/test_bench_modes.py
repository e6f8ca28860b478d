"""`mixsig bench --lc-pixels` and `--digital` (pipeline/commands/bench_pixels.py, bench_digital.py,
digital.bench_cnn.speed). Times are measured, not asserted (the machine is shared); block sizes
are checked against counts written out by hand, the cost ratio against its definition."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.commands.bench_digital import parse_variant
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


def test_a_variant_is_a_name_and_python_literals():
    assert parse_variant("base") == ("base", {})
    assert parse_variant("lean:filters=(16,32,64);dropout=0.1") == ("lean", {"filters": (16, 32, 64), "dropout": 0.1})
    for bad in ("x:filters", ":filters=(8,)", "x:filters=(8,"):
        with pytest.raises(OptionError, match="--digital-variant"):
            parse_variant(bad)


def test_digital_times_each_variant_in_order():
    out = _mixsig("bench", "--digital", "--digital-samples", 128, "--digital-variant", "a:filters=(8,)",
                  "--digital-variant", "b:filters=(8,16)", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)["digital"]
    assert [r["variant"] for r in rows] == ["a", "b"] and [r["n"] for r in rows] == [128, 128]
    assert rows[1]["params"] == {"filters": [8, 16]}
    for r in rows:
        assert all(v > 0 for k in ("fit_epoch_s", "fit_targets_epoch_s", "embed_s") for v in r[k])


@pytest.mark.parametrize("args, words", [
    (("--digital", "--digital-variant", "x:nope=3"), ("--digital-variant", "nope")),
    (("--lc-samples", "10", "--no-ngspice"), ("--lc-samples", "--lc-pixels")),
    (("--digital", "--lc-pixels"), ("--lc-pixels", "--digital")),
])
def test_bad_mode_options_are_refused_in_one_line(args, words):
    out = _mixsig("bench", *args)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and all(w in out.stderr for w in words)


def test_the_default_bench_reports_both_transient_rates_from_one_run():
    out = _mixsig("bench", "--no-hardware", "--no-edges", "--epoch-samples", 0, "--batch", 16,
                  "--train-samples", 16, "--train-batch", 16, "--ngspice-samples", 1, "--rebuild-samples", 1,
                  "--processes", 1, "--transient-samples", 4, "--transient-ngspice-samples", 1, "--json")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    native, spice = r["transient_native_samples_per_s"], r["transient_ngspice_samples_per_s"]
    assert native > 0 and spice > 0
    assert r["ratio_transient_native_vs_ngspice"] == pytest.approx(native / spice, rel=1e-12)
    assert 0.0 <= r["transient_settled_fraction"] <= 1.0
    assert 0 < r["transient_settle_s_p50"] <= 1e-9      # within the bench's 1-ns window
