"""Check device model cards with ngspice before any simulation uses them.

ngspice does not refuse every bad card: an unknown parameter is dropped with a warning
("unrecognized parameter (foo) - ignored") and the simulation runs on without it, so the
two engines would silently simulate different devices. We therefore run each distinct
device once, in a one-node test circuit under `ngspice -b` (a separate process, so the
check never touches a worker's libngspice), and treat errors and ignored parameters alike.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from .circuit import CompiledCircuit
from .devices import Device
from .errors import AnalogInputError

_COMPLAINTS = ("error", "unrecognized parameter", "could not find", "mismatch", "undefined parameter",
               "cannot compute", "fatal", "aborted", "model issue")
_accepted: set[str] = set()


class DeviceCardError(AnalogInputError):
    """ngspice rejects (or ignores part of) a device's SPICE model card."""


def _test_netlist(device: Device) -> str:
    lines = ["* device card check", "Vcheck a 0 dc 0.5", "Rcheck a b 1k"]
    lines += device.spice_lines("check", "b", "0")
    lines += device.spice_models()
    lines += [".op", ".end", ""]
    return "\n".join(lines)


def check_device(device: Device, owner: str) -> None:
    """Raise DeviceCardError naming `owner` (a layer) when ngspice does not take the card."""
    text = _test_netlist(device)
    if text in _accepted:
        return
    exe = shutil.which("ngspice")
    if exe is None:
        raise DeviceCardError("ngspice is not installed (Debian package 'ngspice'; run setup.sh), so the "
                              f"device cards of {owner} cannot be checked")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "check.cir"
        path.write_text(text)
        res = subprocess.run([exe, "-b", str(path)], capture_output=True, text=True, timeout=60, cwd=tmp)
    # what ngspice prints after the analysis (the model parameter listing, where unused MOS
    # noise parameters show as "<<NAN, error = 7>>") is not a complaint about the card
    output = res.stderr + res.stdout.split("Doing analysis at TEMP")[0]
    bad = [ln.strip() for ln in output.splitlines() if any(c in ln.lower() for c in _COMPLAINTS)]
    if res.returncode != 0 or bad:
        cards = " ".join(device.spice_models() or device.spice_lines("check", "b", "0"))
        raise DeviceCardError(f"{owner}: ngspice rejects the device card {cards!r}: "
                              + " | ".join(bad[:4] or [f"exit code {res.returncode}"]))
    _accepted.add(text)


def check_circuit_devices(circuit: CompiledCircuit) -> None:
    """Check every distinct device of a compiled circuit (one ngspice run per device)."""
    for blk in circuit.nonlinear:
        check_device(blk.device.instance(0), f"layer '{blk.layer.name}'")  # per-element: same card keys
