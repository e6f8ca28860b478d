"""Property-based fuzzing of the `mixsig` command line (hypothesis): malformed configs,
`--set` overrides and command arguments, through the real entry point (`pipeline.cli.main`
in-process for speed, plus a few real processes). The properties: never a traceback; a
rejected input exits 2 with one line `error: ...` naming what is wrong (the key, option or
file); and no MLflow run is ever left RUNNING. Example counts are bounded (derandomized, so
CI sees the same cases each time; MIXSIG_FUZZ_SCALE=10 tries ten times as many); the number
of cases tried is printed at the end (`pytest -s`)."""
from __future__ import annotations

import atexit
import copy
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings   # noqa: E402
from hypothesis import strategies as st               # noqa: E402

from pipeline import cli                               # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "experiments" / "smoke.yaml"
XOR = ROOT / "experiments" / "xor.yaml"
SCALE = int(os.environ.get("MIXSIG_FUZZ_SCALE", "1"))
TRIED = {"configs": 0, "overrides": 0, "arguments": 0, "hostile": 0, "processes": 0}
REJECTED = {"configs": 0, "overrides": 0, "arguments": 0, "hostile": 0, "processes": 0}
WORK = Path(tempfile.mkdtemp(prefix="mixsig-fuzz-"))
atexit.register(shutil.rmtree, WORK, True)
STORE = WORK / "mlflow.db"


def fuzz_settings(n: int):
    return settings(max_examples=n * SCALE, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def _store(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{STORE}")
    monkeypatch.chdir(WORK)


def _base(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _keys(node, head=""):
    for key, value in node.items():
        yield f"{head}{key}"
        if isinstance(value, dict):
            yield from _keys(value, f"{head}{key}.")


KEYS = sorted(set(_keys(_base(SMOKE))) | set(_keys(_base(XOR))) | {
    "analog.diode.is", "training.optimizer.schedule", "digital.v_low", "digital.v_high", "cotrain.analog_epochs",
    "baseline.enabled", "data.validation_fraction", "data.test_fraction", "mlflow.experiment", "inputs.encoder"})

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**9, 10**9),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=6)
idents = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10)


def _running_runs() -> list:
    import sqlite3
    if not STORE.exists():
        return []
    con = sqlite3.connect(STORE)
    try:
        return con.execute("SELECT run_uuid FROM runs WHERE status = 'RUNNING'").fetchall()
    except sqlite3.OperationalError:    # no tables yet
        return []
    finally:
        con.close()


def _call(capsys, argv) -> tuple[int, str]:
    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as exc:        # would be a traceback-free exit, but main() must return
        pytest.fail(f"main({argv}) raised SystemExit({exc.code})")
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert not _running_runs(), f"a run left RUNNING by {argv}"
    return rc, err


def _rejected(rc: int, err: str, *names) -> None:
    """Exit 2 and one line `error: ...` that names one of `names`."""
    assert rc == 2, (rc, err)
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert any(str(n) in err for n in names), (names, err)


def _set(raw: dict, dotted: str, value) -> None:
    node = raw
    *head, last = dotted.split(".")
    for part in head:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = value


# ---------------------------------------------------------------------------------------
# malformed configs: one key of a working config set to anything, an unknown key added,
# or a section replaced by a value
# ---------------------------------------------------------------------------------------
@fuzz_settings(120)
@given(base=st.sampled_from([SMOKE, XOR]), key=st.one_of(st.sampled_from(KEYS), idents.map(lambda s: f"analog.{s}"),
                                                        idents), value=values)
def test_fuzz_configs(capsys, base, key, value):
    TRIED["configs"] += 1
    raw = copy.deepcopy(_base(base))
    _set(raw, key, value)
    path = WORK / "fuzz.yaml"
    path.write_text(yaml.safe_dump(raw))
    rc, err = _call(capsys, ["config", "show", path])
    if rc == 0:
        return                         # an acceptable value: nothing to check
    REJECTED["configs"] += 1
    parts = key.split(".")
    _rejected(rc, err, *parts, *(str(v) for v in ([value] if not isinstance(value, (list, dict)) else [])))
    # the same file given to a stage: the same refusal, before any run exists
    rc2, err2 = _call(capsys, ["train-analog", path, "-q"])
    _rejected(rc2, err2, *parts)


@fuzz_settings(40)
@given(content=st.one_of(st.binary(min_size=1, max_size=200), st.text(max_size=200).map(str.encode)))
def test_fuzz_config_bytes(capsys, content):
    """Any bytes as a config file: valid (a mapping of known keys is unlikely) or refused,
    naming the file."""
    TRIED["configs"] += 1
    path = WORK / "bytes.yaml"
    path.write_bytes(content)
    rc, err = _call(capsys, ["config", "show", path])
    if rc != 0:
        REJECTED["configs"] += 1
        _rejected(rc, err, str(path), "bytes.yaml")


# ---------------------------------------------------------------------------------------
# --set overrides
# ---------------------------------------------------------------------------------------
override_text = st.text(alphabet="[]{},:'\"0123456789abcdefxyz.-_ =e+#!&*", max_size=16)


@fuzz_settings(120)
@given(key=st.one_of(st.sampled_from(KEYS), idents, st.text(alphabet="ab.= ", max_size=6)),
       text=override_text, sep=st.sampled_from(["=", "=", "=", "", ":"]))
def test_fuzz_overrides(capsys, key, text, sep):
    TRIED["overrides"] += 1
    item = f"{key}{sep}{text}"
    rc, err = _call(capsys, ["config", "show", SMOKE, "--set", item])
    if rc == 0:
        return
    REJECTED["overrides"] += 1
    _rejected(rc, err, "--set", *[p for p in key.split(".") if p.strip()])


# ---------------------------------------------------------------------------------------
# command arguments: each case carries at least one bad option value
# ---------------------------------------------------------------------------------------
def _not_round(s: str) -> bool:
    try:
        return int(s) < 0
    except ValueError:
        return True


bad_options = st.one_of(
    st.tuples(st.just("--round"), st.text(max_size=6).filter(_not_round)),
    st.tuples(st.just("--from-run"), st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)),
    st.tuples(st.just("--from-run"), st.text(alphabet="ghijklmnopqrstuvwxyz-_/", min_size=1, max_size=12)),
    st.tuples(st.just("--input"), st.text(alphabet="abcdefgimnorstuvwxyz=/._", max_size=20)),
    st.tuples(st.just("--workdir"), st.sampled_from(["/etc/passwd", "/etc/passwd/sub", str(XOR), "/proc/nosuch/x"])),
    st.tuples(st.just("--set"), st.sampled_from(["analog.hidden=[32,", "analog.hidden=[200000]", "name=''",
                                                  "training.epochs=-1", "analog=[]", "training=0", "nosuch.key=1",
                                                  "analog.gain=abc", "digital.v_low=-2"])),
)
extra_options = st.lists(st.sampled_from([("-q",), ("--set", "training.epochs=1"), ("--round", "1")]), max_size=2)


@fuzz_settings(80)
@given(command=st.sampled_from(["train-analog", "embed", "evaluate", "optimize-inputs", "train-digital",
                                "retrain-digital", "cotrain"]),
       config=st.sampled_from([XOR, SMOKE]), bad=bad_options, extra=extra_options)
def test_fuzz_stage_arguments(capsys, command, config, bad, extra):
    TRIED["arguments"] += 1
    flag, value = bad
    if command == "cotrain" and flag in ("--round",):
        flag = "--from-run"
    argv = [command, config, *[a for opt in extra if not (command == "cotrain" and opt[0] == "--round") for a in opt],
            flag, value]
    rc, err = _call(capsys, argv)
    REJECTED["arguments"] += 1
    names = [flag, value, *value.split("=", 1)[0].split("."), *value.split("/"), "Missing", "no such option"]
    _rejected(rc, err, *[n for n in names if n])


@fuzz_settings(60)
@given(command=st.sampled_from(["bench", "compare", "verify", "data", "config", "cotrain"]),
       args=st.lists(st.one_of(st.sampled_from(["--batch", "--train-samples", "--processes", "--metrics",
                                                "--experiment", "--samples", "--resume", "--nosuch", "show",
                                                "check", "--filter", "--max-runs", "--time"]),
                               st.text(alphabet="-0123456789abcxyz.,=", max_size=6)), min_size=1, max_size=4))
def test_fuzz_other_commands(capsys, command, args):
    """Other commands with arguments that are almost always wrong (a valid bench or verify
    call would run: such cases are skipped by construction: the first argument is bad)."""
    TRIED["arguments"] += 1
    if command in ("bench", "verify") and not any(a.startswith("--") for a in args):
        args = ["--nosuch", *args]
    if command == "bench":
        args = [*args, "--batch", "-5"]
    if command == "verify":
        args = [*args, "--samples", "0"]
    rc, err = _call(capsys, [command, *args])
    if rc == 0:
        return
    REJECTED["arguments"] += 1
    assert rc == 2, (rc, err)
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err


# ---------------------------------------------------------------------------------------
# hostile YAML: deep nesting, alias bombs, duplicate keys (in a file or a --set value)
# ---------------------------------------------------------------------------------------
def _nested(kind: str, depth: int) -> str:
    return "[" * depth + "]" * depth if kind == "list" else "{a: " * depth + "1" + "}" * depth


def _bomb(levels: int, width: int) -> str:
    """YAML whose last alias stands for width**levels values ("billion laughs")."""
    lines = ["a0: &a0 [lol, lol]"]
    for k in range(1, levels + 1):
        lines.append(f"a{k}: &a{k} [{', '.join([f'*a{k - 1}'] * width)}]")
    return "\n".join(lines)


@fuzz_settings(12)
@given(kind=st.sampled_from(["list", "map"]), depth=st.one_of(st.integers(33, 400), st.integers(800, 6000)),
       where=st.sampled_from(["digital.params", "hardware.overrides", "name", "analog.hidden"]),
       how=st.sampled_from(["file", "set"]))
def test_fuzz_deep_nesting(capsys, kind, depth, where, how):
    TRIED["hostile"] += 1
    if how == "set":
        rc, err = _call(capsys, ["config", "show", XOR, "--set", f"{where}={_nested(kind, depth)}"])
        names = ["--set", "nested"]
    else:
        path = WORK / "deep.yaml"
        section, _, key = where.rpartition(".")
        body = f"{key}: {_nested(kind, depth)}"
        path.write_text(f"name: deep\n{section}:\n  {body}\n" if section else f"{body}\n")
        rc, err = _call(capsys, ["config", "show", path])
        names = [str(path)]
    REJECTED["hostile"] += 1
    _rejected(rc, err, *names)
    assert "nested" in err


@fuzz_settings(10)
@given(levels=st.integers(4, 9), width=st.integers(6, 10),
       where=st.sampled_from(["digital.params", "hardware.overrides", "analog.layers", "analog.hidden"]))
def test_fuzz_alias_bombs(capsys, levels, width, where):
    """A few hundred bytes of anchors standing for up to 10**9 values: refused at once,
    in one short line, wherever the alias is used."""
    TRIED["hostile"] += 1
    section, key = where.split(".")
    top = f"{section}:\n  {key}: {{x: *a{levels}}}\n" if section != "analog" or key == "layers" else \
        f"{section}:\n  {key}: *a{levels}\n"
    if key == "layers":
        top = f"{section}:\n  layers: [{{type: dense, units: *a{levels}}}]\n"
    path = WORK / "bomb.yaml"
    path.write_text(f"name: bomb\n{_bomb(levels, width)}\n{top}")
    rc, err = _call(capsys, ["config", "show", path])
    if width ** levels * 2 < 100_000:
        return                           # small enough to be an ordinary (if odd) config
    REJECTED["hostile"] += 1
    _rejected(rc, err, str(path))
    assert "alias" in err and len(err) < 400, err[:500]


@fuzz_settings(20)
@given(key=st.sampled_from(["training", "analog", "name", "seed", "data"]), how=st.sampled_from(["file", "set"]))
def test_fuzz_duplicate_keys(capsys, key, how):
    TRIED["hostile"] += 1
    text = XOR.read_text()
    if how == "file":
        path = WORK / "dup.yaml"
        value = "{}" if key in ("training", "analog", "data") else ("dup" if key == "name" else "3")
        path.write_text(f"{text}\n{key}: {value}\n")
        rc, err = _call(capsys, ["config", "show", path])
    else:
        rc, err = _call(capsys, ["config", "show", XOR, "--set", f"digital.params={{{key}: 1, {key}: 2}}"])
    REJECTED["hostile"] += 1
    _rejected(rc, err, "duplicate key")
    assert repr(key) in err


# ---------------------------------------------------------------------------------------
# hostile files: truncated and oversized model files, encoder manifests naming any class
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_block(tmp_path_factory):
    import contextlib
    import io
    folder = tmp_path_factory.mktemp("block")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()), pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{STORE}")     # the fuzz store, as the tests use
        mp.chdir(WORK)
        rc = cli.main(["train-analog", str(XOR), "--set", "training.epochs=1", "--workdir", str(folder), "-q"])
    assert rc == 0, out.getvalue()
    (model,) = [p.resolve() for p in folder.glob("*/analog_model")]   # a link to the run's artifacts
    return model


def _mutate(model: Path, target: Path, kind: str, amount: float) -> None:
    import json
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(model, target)
    npz, desc_file = target / "arrays.npz", target / "model.json"
    if kind == "truncate":
        data = npz.read_bytes()
        npz.write_bytes(data[:int(len(data) * amount)])
    elif kind == "garble":
        data = bytearray(npz.read_bytes())
        at = int(len(data) * amount)
        data[at:at + 64] = bytes(64)
        npz.write_bytes(bytes(data))
    else:
        desc = json.loads(desc_file.read_text())
        dense = [layer for layer in desc["layers"] if layer["type"] == "Dense"]
        dense[int(amount * len(dense)) % len(dense)]["config"]["units"] = {"huge": 2e9, "zero": 0, "negative": -5,
                                                                          "float": 3.5}[kind]
        desc_file.write_text(json.dumps(desc))


@fuzz_settings(10)
@given(kind=st.sampled_from(["truncate", "garble", "huge", "zero", "negative", "float"]),
       amount=st.floats(0.0, 0.97))
def test_fuzz_damaged_model_files(capsys, trained_block, kind, amount):
    """evaluate --input analog=<a damaged copy>: one line naming the folder, exit 2."""
    TRIED["hostile"] += 1
    target = WORK / "damaged"
    _mutate(trained_block, target, kind, amount)
    rc, err = _call(capsys, ["evaluate", XOR, "--input", f"analog={target}", "-q"])
    if rc == 0:
        return                       # a garbled byte inside padding, say: still a valid model
    REJECTED["hostile"] += 1
    _rejected(rc, err, str(target))


@fuzz_settings(40)
@given(module=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_.", min_size=1, max_size=12),
       attr=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_.", min_size=1, max_size=8),
       named=st.sampled_from(["", "os", "this", "tensorflow", "subprocess", "antigravity", "evil_beside"]))
def test_fuzz_encoder_manifests_name_any_class(module, attr, named):
    """An encoder.json naming any class: refused, and no module is imported because of it."""
    import json
    import digital
    TRIED["hostile"] += 1
    folder = WORK / "enc"
    folder.mkdir(exist_ok=True)
    (WORK / "evil_beside.py").write_text("raise SystemExit('imported')\n")
    name = f"{named or module}:{attr}"
    (folder / "encoder.json").write_text(json.dumps({"format": "digital-encoder", "class": name, "params": {}}))
    before = set(sys.modules)
    with pytest.raises(digital.EncoderContractError, match="not a registered encoder class"):
        digital.load_encoder(folder)
    assert set(sys.modules) == before
    REJECTED["hostile"] += 1


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
@pytest.mark.parametrize("argv", [["config", "schema", "-o", "/dev/full"]])
def test_full_disk_outputs(capsys, argv):
    TRIED["hostile"] += 1
    rc, err = _call(capsys, argv)
    REJECTED["hostile"] += 1
    assert rc == 1 and err.strip().splitlines()[-1].startswith("error: No space left on device"), (rc, err)


# ---------------------------------------------------------------------------------------
# a few real processes (what a shell user sees)
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["train-analog", str(XOR), "--set", "analog.hidden=[32,"],
    ["train-analog", str(XOR), "--workdir", "/etc/passwd"],
    ["cotrain", str(SMOKE), "--set", "analog.hidden=[200000]"],
    ["config", "show", "/"],
    ["compare", "--experiment", "nosuch"],
    ["bench", "--batch", "-5"],
], ids=["bad-yaml", "workdir-file", "too-big", "folder-config", "no-experiment", "negative-batch"])
def test_real_processes(argv, tmp_path):
    TRIED["processes"] += 1
    REJECTED["processes"] += 1
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-m", "pipeline", *argv], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2, (out.returncode, out.stderr[-1500:])
    assert out.stderr.startswith("error: ") and len(out.stderr.strip().splitlines()) == 1, out.stderr[-1500:]
    assert "Traceback" not in out.stderr


def test_zz_report_count():
    total = sum(TRIED.values())
    print(f"\nfuzz: {total} cases tried ({', '.join(f'{k} {v}' for k, v in TRIED.items())}), "
          f"{sum(REJECTED.values())} of them rejected with exit 2 ({', '.join(f'{k} {v}' for k, v in REJECTED.items())})")
    assert total > 0
