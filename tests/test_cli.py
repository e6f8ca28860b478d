"""The mixsig CLI: commands generated from the stage declarations, adding a stage by adding
a module, --help without heavy imports, one-line errors with exit code 2, --debug, Ctrl-C,
`config show`/`config schema`, and the commands the README tells users to run."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline import cli
from pipeline.commands import COMMANDS
from pipeline.flow import KINDS, Stage, StageContext, register
from pipeline.stages import STAGES

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "MLFLOW_TRACKING_URI": "sqlite:////nonexistent/never-used.db"}
ALL_COMMANDS = sorted(set(STAGES) | set(COMMANDS))
STAGE_OPTIONS = ("--from-run", "--input", "--round", "--workdir", "--set", "--quiet")


def _mixsig(*args, cwd=ROOT, env=ENV):
    return subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def _one_line_error(out, *words):
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert out.stderr.startswith("error: ") and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    for w in words:
        assert w in out.stderr, (w, out.stderr)


def test_the_six_stages_and_the_other_commands_are_registered():
    assert set(STAGES) == {"train-digital", "embed", "train-analog", "optimize-inputs", "retrain-digital", "evaluate",
                           "program", "finetune-chip"}
    assert set(COMMANDS) == {"cotrain", "compare", "verify", "bench", "energy", "config", "data",
                             "robustness", "sweep", "signoff", "predict", "recalibrate", "cep", "phases", "ternary"}


def test_help_lists_every_command():
    out = _mixsig("--help")
    assert out.returncode == 0, out.stderr
    for name in ALL_COMMANDS:
        assert re.search(rf"^\s+{re.escape(name)}\s", out.stdout, re.M), name


@pytest.mark.parametrize("name", ALL_COMMANDS)
def test_each_command_has_help(name):
    out = cli.main([name, "--help"])
    assert out == 0


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_commands_have_the_common_stage_options(name, capsys):
    assert cli.main([name, "--help"]) == 0
    text = capsys.readouterr().out
    assert f"mixsig {name} [OPTIONS] [CONFIG]" in text
    for option in STAGE_OPTIONS:
        assert option in text, option


def test_stage_declarations_name_known_kinds_and_their_config_dependent_inputs():
    from pipeline.config import load_config
    images, tabular = load_config(ROOT / "experiments/smoke.yaml"), load_config(ROOT / "experiments/xor.yaml")
    for stage in STAGES.values():
        assert set(stage.needs) | set(stage.optional) | set(stage.produces) <= set(KINDS), stage.name
        assert callable(stage.body) and stage.help
    # the rules that depend on the data set, as each stage declares them
    assert STAGES["train-analog"].required_inputs(images) == ("embeddings",)
    assert STAGES["train-analog"].required_inputs(tabular) == ()
    assert set(STAGES["evaluate"].required_inputs(images)) == {"analog", "embeddings", "encoder"}
    assert STAGES["evaluate"].required_inputs(tabular) == ("analog",)
    assert set(STAGES["retrain-digital"].required_inputs(images)) == {"encoder", "targets"}


def test_a_registered_stage_becomes_a_command(monkeypatch, capsys):
    calls = []
    stage = Stage(name="count-things", help="count things", body=calls.append, needs=("analog",))
    monkeypatch.setitem(STAGES, stage.name, stage)
    assert cli.main(["--help"]) == 0
    assert "count-things" in capsys.readouterr().out
    assert cli.main(["count-things", "--help"]) == 0
    assert "Inputs: analog" in capsys.readouterr().out
    with pytest.raises(TypeError):
        register(object())


SMOKE_PLAN = [("train-digital", 0), ("embed", 0), ("train-analog", 0), ("optimize-inputs", 0),
              ("retrain-digital", 0), ("embed", 1), ("train-analog", 1), ("evaluate", 1)]


def test_the_cotrain_plan_is_its_stages_and_rounds():
    from pipeline.config import load_config
    from pipeline.cotraining.run import make_plan
    cfg = load_config(ROOT / "experiments/smoke.yaml")          # cotrain.rounds: 1
    assert make_plan(cfg) == SMOKE_PLAN
    assert make_plan(cfg, train_digital=False) == SMOKE_PLAN[1:]
    # through-analog takes no target embeddings: no optimize-inputs step
    through = load_config(ROOT / "experiments/smoke.yaml", ["digital.retrain_method=through-analog"])
    assert make_plan(through) == [s for s in SMOKE_PLAN if s[0] != "optimize-inputs"]
    both = load_config(ROOT / "experiments/smoke.yaml", ["digital.retrain_method=both"])
    assert make_plan(both) == SMOKE_PLAN
    cfg = cfg.model_copy(update={"cotrain": cfg.cotrain.model_copy(update={"rounds": 0})})
    assert make_plan(cfg) == [("train-digital", 0), ("embed", 0), ("train-analog", 0), ("evaluate", 0)]


def test_a_stage_module_can_add_an_artifact_kind_and_join_the_cotrain(monkeypatch, capsys):
    """What a `program` stage needs: its own artifact kind and a place in the co-training,
    both from its declaration alone."""
    from pipeline.config import load_config
    from pipeline.cotraining.run import make_plan
    monkeypatch.setitem(KINDS, "chip", ("chips", "the programmed chips (program)"))
    stage = Stage(name="program", help="program chips", body=print, needs=("analog",), produces=("chip",),
                  kinds={"chip": ("chips", "the programmed chips (program)")}, cotrain_after="train-analog",
                  cotrain_when=lambda cfg: cfg.analog.gain > 1)
    monkeypatch.setitem(STAGES, "program", stage)
    register(stage)
    cfg = load_config(ROOT / "experiments/smoke.yaml")
    plan = make_plan(cfg)
    assert plan == SMOKE_PLAN[:3] + [("program", 0)] + SMOKE_PLAN[3:7] + [("program", 1), ("evaluate", 1)]
    cfg = cfg.model_copy(update={"analog": cfg.analog.model_copy(update={"gain": 1.0})})
    assert make_plan(cfg) == SMOKE_PLAN                          # cotrain_when says no
    assert cli.main(["program", "--help"]) == 0
    assert "chip" in capsys.readouterr().out                    # --input lists the new kind
    with pytest.raises(ValueError, match="already declared"):
        register(Stage(name="other", help="x", body=print, kinds={"chip": ("elsewhere", "?")}))


DUMMY_STAGE = '''
from pipeline.flow.runner import Option, Stage


def body(ctx):
    ctx.log({"doubled_gain": 2 * ctx.cfg.analog.gain})
    ctx.say("counted")


STAGE = Stage(name="double-gain", help="log twice the analog gain", body=body,
              options=(Option("--gain", "analog.gain", "the gain to double", float),))
'''


def test_adding_a_stage_module_adds_a_working_command(tmp_path):
    """A copy of the package plus one new module under pipeline/stages/ and nothing else:
    `mixsig double-gain` is listed, takes the common options and its own, and runs as a
    stage (an MLflow run with the stage tags and its metric)."""
    shutil.copytree(ROOT / "pipeline", tmp_path / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "pipeline" / "stages" / "double_gain.py").write_text(DUMMY_STAGE)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "PYTHONPATH": str(tmp_path)}
    out = _mixsig("--help", cwd=tmp_path, env=env)
    assert out.returncode == 0 and re.search(r"^\s+double-gain\s+log twice the analog gain", out.stdout, re.M)
    out = _mixsig("double-gain", ROOT / "experiments/xor.yaml", "--gain", "2.5", "--workdir", tmp_path / "runs",
                  cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert "[double-gain r0] counted" in out.stdout and "double-gain run" in out.stdout
    import mlflow
    client = mlflow.tracking.MlflowClient(env["MLFLOW_TRACKING_URI"])
    (run,) = client.search_runs([client.get_experiment_by_name("xor").experiment_id])
    assert run.data.tags["mixsig.stage"] == "double-gain" and run.data.tags["mixsig.status"] == "finished"
    assert run.data.params["analog.gain"] == "2.5"            # the option set the config key
    assert run.data.metrics["doubled_gain"] == 5.0
    assert not (ROOT / "pipeline" / "stages" / "double_gain.py").exists()   # only the copy has it


def test_version():
    out = _mixsig("--version")
    assert out.returncode == 0 and re.match(r"mixsig \S+", out.stdout)


def test_help_imports_nothing_heavy():
    code = ("import sys; from pipeline import cli\n"
            "for args in (['--help'], ['embed', '--help'], ['cotrain', '--help'], ['config', 'show', '--help']):\n"
            "    assert cli.main(args) == 0\n"
            "heavy = [m for m in ('tensorflow', 'keras', 'mlflow', 'PySpice', 'sklearn', 'analog.model') "
            "if m in sys.modules]\n"
            "print('HEAVY=' + ','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "HEAVY="


def test_user_errors_are_one_line_without_traceback(tmp_path):
    _one_line_error(_mixsig("config", "show", tmp_path / "missing.yaml"), "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: b\ntraining: {loss: hinge}\n")
    _one_line_error(_mixsig("config", "show", bad), "training.loss")
    _one_line_error(_mixsig("config", "show", ROOT / "experiments/xor.yaml", "--set", "analog.gain=-1"), "analog.gain")


def test_usage_errors_are_one_line_with_exit_code_2():
    _one_line_error(_mixsig("embed", "experiments/smoke.yaml", "--round", "-1"), "--round", "negative")
    _one_line_error(_mixsig("embed", "--round", "two"), "--round", "'two' is not an integer")
    _one_line_error(_mixsig("embed", "--no-such-option"), "--no-such-option", "mixsig embed --help")
    _one_line_error(_mixsig("no-such-command"), "no-such-command")
    _one_line_error(_mixsig("embed"), "give a config file or --from-run")
    _one_line_error(_mixsig("cotrain", "--resume", "abc", "experiments/smoke.yaml"), "--resume")


def test_debug_shows_the_traceback(tmp_path):
    from pipeline.config import ConfigError
    with pytest.raises(ConfigError):
        cli.main(["--debug", "config", "show", str(tmp_path / "missing.yaml")])
    out = _mixsig("--debug", "data", "show", tmp_path / "missing.yaml")
    assert out.returncode != 0 and "Traceback" in out.stderr and "ConfigError" in out.stderr


def test_ctrl_c_exits_130(monkeypatch, capsys):
    import pipeline.commands.config as config_command

    def interrupted(*args, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(config_command, "show_config", interrupted)
    assert cli.main(["config", "show", "experiments/xor.yaml"]) == 130
    assert "interrupted" in capsys.readouterr().err


def _flat_lines(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" = ")
        out[key.strip()] = value
    return out


def test_config_show_prints_the_validated_config_with_defaults(tmp_path):
    raw = yaml.safe_load((ROOT / "experiments/xor.yaml").read_text())
    out = _mixsig("config", "show", "experiments/xor.yaml", "--set", "analog.gain=3")
    assert out.returncode == 0, out.stderr
    flat = _flat_lines(out.stdout)
    assert flat["data.dataset"] == "'xor'" and flat["name"] == repr(raw["name"])
    assert float(flat["analog.gain"]) == 3.0
    assert "baseline.enabled" in flat and "baseline" not in raw      # a default the file leaves out
    # the old name still works and prints the same
    assert _mixsig("data", "show", "experiments/xor.yaml", "--set", "analog.gain=3").stdout == out.stdout
    # --yaml prints a complete config: loading it gives the same config
    full = _mixsig("config", "show", "experiments/xor.yaml", "--yaml")
    assert full.returncode == 0, full.stderr
    (tmp_path / "full.yaml").write_text(full.stdout)
    from pipeline.config import load_config
    assert load_config(tmp_path / "full.yaml") == load_config(ROOT / "experiments/xor.yaml")


def test_every_config_show_line_is_accepted_back_by_set():
    """A line of `config show` pasted into --set gives the same config (lists included:
    [72, 32], not '72,32')."""
    from pipeline.config import load_config
    cfg_path = ROOT / "experiments/digits_lc.yaml"
    out = _mixsig("config", "show", str(cfg_path))
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if " = " in line]
    assert any("= [" in line for line in lines)
    # analog.hidden is derived from analog.layers: set it alone and the two would disagree
    sets = [f"{k.strip()}={v}" for k, _, v in (line.partition(" = ") for line in lines) if k.strip() != "analog.hidden"]
    assert load_config(cfg_path, sets) == load_config(cfg_path)


def test_verify_takes_set_overrides():
    out = _mixsig("verify", "experiments/xor.yaml", "--set", "analog.gain=-1")
    _one_line_error(out, "analog.gain")


def test_config_schema_is_a_json_schema_of_every_section(tmp_path):
    out = _mixsig("config", "schema", "-o", tmp_path / "schema.json")
    assert out.returncode == 0, out.stderr
    schema = json.loads((tmp_path / "schema.json").read_text())
    assert "json-schema.org" in schema["$schema"]
    sections = {k for k, v in yaml.safe_load((ROOT / "experiments/fashion_mnist.yaml").read_text()).items()
                if isinstance(v, dict)}
    assert sections <= set(schema["properties"])
    assert json.loads(_mixsig("config", "schema").stdout) == schema


def test_data_check_on_a_missing_folder_fails_cleanly(tmp_path):
    out = _mixsig("data", "check", "--path", str(tmp_path))
    _one_line_error(out, str(tmp_path), "apt-get install dataset-fashion-mnist")
    out = _mixsig("data", "check", "--path", str(tmp_path / "nope"))
    _one_line_error(out, f"folder {tmp_path / 'nope'} does not exist")


def test_no_command_prints_help_and_fails():
    out = _mixsig()
    assert out.returncode == 2 and "usage: mixsig" in out.stdout.lower()


# --- what the README and CI tell users to run -------------------------------------------

def _readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    cmds = []
    for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", text, re.S):
        for line in block.splitlines():
            m = re.search(r"mixsig (.*)$", line)
            if m:
                cmds.append(m.group(1).split())
    return cmds


def test_the_commands_the_readme_shows_exist_and_their_configs_validate():
    from pipeline.config import load_config
    cmds = _readme_commands()
    assert cmds, "the README shows no mixsig command"
    for words in cmds:
        if re.match(r"[<\[A-Z]", words[0]):                    # a placeholder such as COMMAND or <stage>
            continue
        assert words[0] in ALL_COMMANDS, words
        for word in words[1:]:
            if word.endswith((".yaml", ".yml")):
                load_config(ROOT / word)       # raises if the config the README names is broken


def test_setup_script_is_valid_bash():
    out = subprocess.run(["bash", "-n", str(ROOT / "setup.sh")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("setup_rc, pytest_rc", [(0, 0), (0, 1), (1, 0)])
def test_ci_runs_setup_then_the_tests_and_fails_if_either_fails(tmp_path, setup_rc, pytest_rc):
    """.ci/run in a copy whose setup.sh and .venv/bin/python are stubs that log their calls."""
    (tmp_path / ".ci").mkdir()
    shutil.copy(ROOT / ".ci" / "run", tmp_path / ".ci" / "run")
    log = tmp_path / "calls.log"
    (tmp_path / "setup.sh").write_text(f"echo setup >> {log}\nexit {setup_rc}\n")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    python = tmp_path / ".venv" / "bin" / "python"
    python.write_text(f"#!/bin/sh\necho \"python $*\" >> {log}\nexit {pytest_rc}\n")
    python.chmod(0o755)
    out = subprocess.run(["bash", str(tmp_path / ".ci" / "run")], cwd="/", capture_output=True, text=True)
    calls = log.read_text().splitlines()
    assert calls[0] == "setup"
    if setup_rc:
        assert out.returncode != 0 and calls == ["setup"]
    else:
        assert calls[1].startswith("python -m pytest")
        assert (out.returncode == 0) == (pytest_rc == 0)


def test_tracking_uri_default_and_override(monkeypatch, tmp_path):
    from pipeline.runtime.tracking import tracking_uri
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


def test_quiet_also_silences_mlflow_artifact_bars(monkeypatch, tmp_path):
    import os

    from pipeline import cli
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    assert cli.main(["train-analog", str(tmp_path / "missing.yaml"), "-q"]) == 2
    assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"
    from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR
    assert MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.get() is False


def _raising(monkeypatch, exc):
    def body(*args, **kw):
        raise exc
    monkeypatch.setattr("pipeline.flow.lineage.load_config_with_overrides", body)


@pytest.mark.parametrize("make", [
    lambda: __import__("numpy").concatenate([]),                  # numpy's own ValueError: a bug
    lambda: [][1],
    lambda: (_ for _ in ()).throw(TypeError("unsupported operand")),
], ids=["numpy-valueerror", "indexerror", "typeerror"])
def test_a_bug_shows_its_traceback_and_exits_1(monkeypatch, capsys, tmp_path, make):
    try:
        make()
    except Exception as exc:
        bug = exc
    _raising(monkeypatch, bug)
    rc = cli.main(["config", "show", str(ROOT / "experiments" / "xor.yaml")])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "Traceback" in err and type(bug).__name__ in err
    assert err.strip().splitlines()[-1].startswith("error: internal error") and "bug in mixsig" in err


@pytest.mark.parametrize("exc", [
    "pipeline.errors:SetupError", "pipeline.config:ConfigError", "pipeline.data:DataError",
    "pipeline.errors:StageInputError", "pipeline.runtime.tracking:TrackingStoreError", "pipeline.runtime.liveness:LivenessError",
    "pipeline.hardware.signoff:SignoffError", "analog.errors:AnalogInputError", "analog.errors:MissingModelError",
    "digital.errors:DigitalInputError", "digital:EncoderContractError", "analog.spice_check:DeviceCardError"])
def test_each_areas_user_error_is_one_line_exit_2(monkeypatch, capsys, exc):
    import importlib
    module, _, name = exc.partition(":")
    _raising(monkeypatch, getattr(importlib.import_module(module), name)("the input named here is wrong"))
    rc = cli.main(["config", "show", str(ROOT / "experiments" / "xor.yaml")])
    err = capsys.readouterr().err
    assert rc == 2 and err == "error: the input named here is wrong\n", err


def test_a_full_disk_is_one_line_exit_1(monkeypatch, capsys):
    import errno
    _raising(monkeypatch, OSError(errno.ENOSPC, "No space left on device", "/some/file"))
    rc = cli.main(["config", "show", str(ROOT / "experiments" / "xor.yaml")])
    err = capsys.readouterr().err
    assert rc == 1 and err == "error: No space left on device (/some/file)\n", err


def test_verify_with_no_samples_is_a_usage_error():
    _one_line_error(_mixsig("verify", "experiments/xor.yaml", "-n", "0"), "--samples", "0")


def test_full_disk_outputs_are_one_line_exit_1(tmp_path):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    out = _mixsig("config", "schema", "-o", "/dev/full")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip().splitlines()[-1] == "error: No space left on device", out.stderr
