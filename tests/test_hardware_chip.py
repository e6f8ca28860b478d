"""A programmed chip's circuit: diode and amplifier variation drawn as specified, and the
same chip solved by the native engine and by ngspice (every kind of variation on)."""
import shutil

import numpy as np
import pytest

from analog.devices import MOSDiode, ShockleyDiode
from analog.hardware import Chip, program, resolve_hardware
from tests.analog_circuits import EVERY_VARIATION, block, inputs, solve_on_both_engines


def test_variation_statistics_and_the_chip_circuit_carries_them():
    n = 10_000
    m = block(features=2, hidden=(n,), outputs=1, device=ShockleyDiode(IS=1e-14, RS=10.0), gain=3.0)
    chip = program(m, resolve_hardware("ideal", {"variation": {"is_sigma": 0.3, "gain_sigma": 0.02,
                                                               "offset_sigma": 0.005}}), seed=0)
    se = lambda sigma: 5 * sigma / np.sqrt(n)
    for blk in chip.circuit.nonlinear:
        ln_is = np.log(np.asarray(blk.device.IS) / 1e-14)
        assert ln_is.shape == (n,)
        assert abs(ln_is.mean()) < se(0.3) and abs(ln_is.std() / 0.3 - 1) < 5 / np.sqrt(2 * n)
    rel = chip.circuit.amp_gain / 3.0 - 1
    assert abs(rel.mean()) < se(0.02) and abs(rel.std() / 0.02 - 1) < 5 / np.sqrt(2 * n)
    off = chip.circuit.amp_offset
    assert abs(off.mean()) < se(0.005) and abs(off.std() / 0.005 - 1) < 5 / np.sqrt(2 * n)
    np.testing.assert_array_equal(chip.circuit.amp_gain, chip.realised["amp_gain"])
    # MOS diodes vary in threshold (normal)
    m = block(features=2, hidden=(n,), outputs=1, device=MOSDiode(VTO=0.3))
    chip = program(m, resolve_hardware("ideal", {"variation": {"vto_sigma": 0.04}}), seed=1)
    for blk in chip.circuit.nonlinear:
        d = np.asarray(blk.device.VTO) - 0.3
        assert abs(d.mean()) < se(0.04) and abs(d.std() / 0.04 - 1) < 5 / np.sqrt(2 * n)
    assert not np.array_equal(*(np.asarray(b.device.VTO) for b in chip.circuit.nonlinear))


@pytest.mark.parametrize("device", [ShockleyDiode(RS=10.0), MOSDiode(VTO=0.3, KP=2e-4, LAMBDA=0.02)],
                         ids=["shockley", "mos"])
def test_chip_with_every_variation_agrees_native_and_ngspice(device):
    m = block(hidden=(4,), device=device, vref=0.6)
    chip = program(m, resolve_hardware("pcm", EVERY_VARIATION), seed=3)
    assert set(chip.realised) == {"device_params", "amp_gain", "amp_offset"}
    x = inputs(4, 3)
    _, a, _ = solve_on_both_engines(chip, x, t=3600.0)     # drifted and read once: both engines see this read
    # the chip differs from the trained block (the variation is really in the circuit)
    assert np.abs(chip.circuit.outputs(a.v) - m.predict(x)).max() > 1e-3
    text = chip.to_netlist(x[:1], t=3600.0)
    assert text.count(".model") >= 4 and ".op" in text


def test_save_load_round_trip_with_variation(tmp_path):
    m = block(hidden=(4,), device=MOSDiode(VTO=0.3, KP=2e-4))
    chip = program(m, resolve_hardware("rram", {"variation": {"vto_sigma": 0.03}}), seed=5)
    chip.save(tmp_path / "c")
    back = Chip.load(tmp_path / "c", m)
    x = inputs(6, 3)
    rng = lambda: np.random.default_rng(9)
    np.testing.assert_array_equal(back.predict(x, t=10.0, rng=rng()), chip.predict(x, t=10.0, rng=rng()))
    np.testing.assert_array_equal(back.circuit.amp_gain, chip.circuit.amp_gain)
    for a, b in zip(back.circuit.nonlinear, chip.circuit.nonlinear):
        np.testing.assert_array_equal(np.asarray(a.device.VTO), np.asarray(b.device.VTO))
    alone = Chip.load(tmp_path / "c")          # with the model saved beside it
    np.testing.assert_array_equal(alone.predict(x, t=10.0, rng=rng()), chip.predict(x, t=10.0, rng=rng()))
    assert not list(tmp_path.rglob("*.pkl"))
    with pytest.raises(ValueError, match="do not match"):
        Chip.load(tmp_path / "c", block(hidden=(4,), seed=1, outputs=3))
    with pytest.raises(ValueError, match="missing"):
        Chip.load(tmp_path / "nothing", m)


@pytest.mark.skipif(shutil.which("ngspice") is None, reason="ngspice not installed")
def test_chip_netlist_runs_standalone_and_matches_the_native_solve(tmp_path):
    import re
    import subprocess
    from analog.netlist import NetlistPlan
    m = block(hidden=(4,), device=MOSDiode(VTO=0.3, KP=2e-4), vref=0.6)
    chip = program(m, resolve_hardware("pcm", EVERY_VARIATION), seed=8)
    x = inputs(1, 3, seed=4)
    text = chip.to_netlist(x, t=3600.0, rng=np.random.default_rng(5))
    path = tmp_path / "chip.cir"
    path.write_text(text.replace(".end\n", ".control\nset numdgt=15\nrun\nprint all\n.endc\n.end\n"))
    out = subprocess.run(["ngspice", "-b", str(path)], capture_output=True, text=True, timeout=60).stdout
    vals = {a.lower(): float(b) for a, b in re.findall(r"^\s*([\w#]+) = ([-+0-9.eE]+)\s*$", out, re.M)}
    spice_v = np.array([vals[n] for n in NetlistPlan(chip.circuit).free_nodes])
    native = chip.solve(x, t=3600.0, rng=np.random.default_rng(5))      # the same read
    np.testing.assert_allclose(spice_v, native.v[0], rtol=0, atol=1e-6)
