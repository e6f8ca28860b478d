"""The mixsig CLI (registry, --help, error handling, light imports) and the repo's entry scripts."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import cli
from pipeline.commands import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "MLFLOW_TRACKING_URI": "sqlite:////nonexistent/never-used.db"}


def _mixsig(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=120)


def test_help_lists_every_registered_command():
    out = _mixsig("--help")
    assert out.returncode == 0, out.stderr
    for name in COMMANDS:
        assert re.search(rf"^\s+{re.escape(name)}\s", out.stdout, re.M), name


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_has_help(name):
    out = _mixsig(name, "--help")
    assert out.returncode == 0, out.stderr
    assert f"mixsig {name}" in out.stdout


def test_registry_contract():
    for name, module_name in COMMANDS.items():
        module = cli._load(module_name)
        if module is None:
            continue
        assert module.NAME == name
        assert isinstance(module.HELP, str) and module.HELP
        assert callable(module.add_arguments) and callable(module.run)


def test_version():
    out = _mixsig("--version")
    assert out.returncode == 0 and out.stdout.startswith("mixsig ")


def test_building_the_parser_imports_nothing_heavy():
    code = ("import sys, pipeline.cli; pipeline.cli.build_parser(); "
            "heavy = [m for m in ('tensorflow', 'keras', 'mlflow', 'PySpice', 'sklearn') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_unregistered_module_is_listed_and_not_available(monkeypatch, capsys):
    monkeypatch.setitem(COMMANDS, "future-thing", "future_thing_not_written_yet")
    assert "future-thing" in cli.build_parser().format_help()
    assert cli.main(["future-thing"]) == 2
    assert "not available yet" in capsys.readouterr().err


def test_user_errors_are_one_line_without_traceback(tmp_path):
    out = _mixsig("data", "show", str(tmp_path / "missing.yaml"))
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and "missing.yaml" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: b\ntraining: {loss: hinge}\n")
    out = _mixsig("data", "show", str(bad))
    assert out.returncode == 2 and "training.loss" in out.stderr and "Traceback" not in out.stderr


def test_debug_shows_the_traceback(tmp_path):
    from pipeline.config import ConfigError
    with pytest.raises(ConfigError):
        cli.main(["--debug", "data", "show", str(tmp_path / "missing.yaml")])


def test_data_show_prints_flattened_config():
    out = _mixsig("data", "show", "experiments/xor.yaml")
    assert out.returncode == 0, out.stderr
    assert re.search(r"^data\.dataset\s+= 'xor'$", out.stdout, re.M)
    assert re.search(r"^analog\.g_min\s+= ", out.stdout, re.M)


def test_data_check_on_a_missing_folder_fails_cleanly(tmp_path):
    out = _mixsig("data", "check", "--path", str(tmp_path))
    assert out.returncode == 2
    assert str(tmp_path) in out.stderr and "apt-get install dataset-fashion-mnist" in out.stderr
    out = _mixsig("data", "check", "--path", str(tmp_path / "nope"))
    assert out.returncode == 2 and f"folder {tmp_path / 'nope'} does not exist" in out.stderr


def test_no_command_prints_help_and_fails():
    out = _mixsig()
    assert out.returncode == 2 and "usage: mixsig" in out.stdout


# --- repo entry points ---------------------------------------------------------------

def test_setup_script_is_valid_bash():
    out = subprocess.run(["bash", "-n", str(ROOT / "setup.sh")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    text = (ROOT / "setup.sh").read_text()
    assert "set -euo pipefail" in text and ".mixsig-installed" in text


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second():
    readme = (ROOT / "README.md").read_text()
    block = re.match(r"```(?:bash|sh)?\n(.*?)```", readme, re.S)
    assert block, "README must open with a code block"
    lines = [l for l in block.group(1).splitlines() if l.strip()]
    assert lines == ["bash setup.sh && .venv/bin/mixsig cotrain experiments/fashion_mnist.yaml",
                     "bash setup.sh && .venv/bin/python -m pytest"]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci[-1] == lines[1]
    assert "set -euo pipefail" in ci
    out = subprocess.run(["bash", "-n", str(ROOT / ".ci" / "run")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_tracking_uri_default_and_override(monkeypatch, tmp_path):
    from pipeline.tracking import tracking_uri
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://example.invalid:5000")
    assert tracking_uri() == "http://example.invalid:5000"


@pytest.mark.skipif(not __import__("shutil").which("ngspice"), reason="ngspice not installed")
@pytest.mark.parametrize("config", ["xor", "iris", "wine"])
def test_verify_json_meets_the_gradient_target(config):
    """`mixsig verify --json` on the shipped tabular configs: engines agree, symmetric EP
    matches the exact gradient (cosine ≥ 0.999) for every layer and for the input gradient,
    and one-sided EP is measurably worse (its O(β) bias)."""
    import json
    out = _mixsig("verify", f"experiments/{config}.yaml", "-n", "16", "--json")
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    assert rep["max_abs_dv"] <= 1e-6
    rows = list(rep["layers"].values()) + [rep["input_gradient"]]
    assert set(rep["layers"]) == {"dense1", "dense2"}
    for r in rows:
        assert set(r) >= {"cos_symmetric", "cos_one_sided", "rel_err_symmetric", "rel_err_one_sided"}
        assert r["cos_symmetric"] >= 0.999
        assert r["rel_err_symmetric"] < r["rel_err_one_sided"]
