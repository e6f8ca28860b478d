"""ngspice `.tran` on the block's own netlist with the node capacitors: the reference for
the native transient (analog/transient.py).

The netlist is the DC engines' netlist (analog/netlist.py) with
* a capacitor `C<f> <node> 0 <farads>` at every free node,
* every source as `dc <start> pwl(0 <start> <rise> <end>)` (the input ramp),
* `.options method=gear maxord=1`: backward Euler, the native default, and trtol=1e9, so that
  ngspice's truncation-error control does not cut the steps below `dt` (its grid is still
  its own: the first steps grow from dt/10 by doubling, with breakpoints at the ramp's end),
* `.tran dt duration 0 dt` and a `.control` block writing the free-node voltages with
  16 digits (`wrdata`).
With `amp_pole=(g_m, C_L)` every ideal amplifier becomes a single-pole one: a VCCS of A·g_m
into a pole node loaded by 1/g_m and C_L to V_ref, buffered to the output (time constant
C_L/g_m, the same DC gain and operating point; the check of the ideal-amplifier
approximation, docs/transient.md).
It runs as is with `ngspice -b file.cir` (it writes `tran.txt` in the current folder). The
native integrator replays ngspice's accepted time points (`times` of the result), so both
solve the same difference equations and differ only by their Newton tolerances.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..circuit import CompiledCircuit
from ..errors import AnalogInputError
from ..netlist import NetlistPlan, _num
from ..spice_check import check_circuit_devices

TRAN_OPTIONS = ".options method=gear maxord=1 trtol=1e9"


def tran_netlist(circuit: CompiledCircuit, G_list, C, src_start, src_end, *, rise: float, duration: float,
                 dt: float, nodes=None, plan: NetlistPlan | None = None, out_file: str = "tran.txt",
                 amp_pole=None) -> str:
    """Standalone `.tran` netlist for one sample. nodes: free-node indices to write (default all);
    amp_pole: (g_m, C_L), S and F, scalars or one per amplifier: single-pole amplifiers."""
    plan = plan or NetlistPlan(circuit)
    src_start = np.asarray(src_start, float).ravel()
    src_end = np.asarray(src_end, float).ravel()
    base = plan.text(G_list, src_end, analysis=False, title="analog_block transient").splitlines()
    pwl = {}
    for e, a, b in zip(plan.source_elems, src_start, src_end):
        pwl[e] = f"dc {_num(a)} pwl(0 {_num(a)} {_num(max(rise, 1e-18))} {_num(b)})"
    lines = []
    for ln in base:
        head = ln.split(" ", 1)[0]
        if head in pwl:
            node = ln.split()[1]
            ln = f"{head} {node} 0 {pwl[head]}"
        if ln.strip().lower() == ".end":
            continue
        lines += _single_pole(ln, plan, amp_pole) if amp_pole is not None and re.fullmatch(r"E\d+", head) else [ln]
    C = np.asarray(C, float)
    lines += [f"C{f} {n} 0 {_num(C[f])}" for f, n in enumerate(plan.free_nodes)]
    idx = range(circuit.n_free) if nodes is None else nodes
    vecs = " ".join(f"v({plan.free_nodes[f]})" for f in idx)
    lines += [TRAN_OPTIONS, f".tran {_num(dt)} {_num(duration)} 0 {_num(dt)}",
              ".control", "set wr_singlescale", "set wr_vecnames", "set numdgt=16", "run",
              f"wrdata {out_file} {vecs}", "quit", ".endc", ".end", ""]
    return "\n".join(lines)


def _single_pole(line: str, plan: NetlistPlan, amp_pole) -> list[str]:
    """An amplifier's VCVS line `E<k> int vref in vref A` as a single-pole amplifier."""
    name, internal, vref, nin, _, gain = line.split()
    k = int(name[1:])
    n_amp = len(plan.amps)
    gm, cl = (np.broadcast_to(np.asarray(a, float), (n_amp,))[k] for a in amp_pole)
    pole = f"amppole{k}"
    return [f"G{k}pole {vref} {pole} {nin} {vref} {_num(float(gain) * gm)}",
            f"R{k}pole {pole} {vref} {_num(1.0 / gm)}", f"C{k}pole {pole} {vref} {_num(cl)}",
            f"{name} {internal} {vref} {pole} {vref} 1"]


def run_tran(netlist: str, timeout: float = 600.0) -> tuple[np.ndarray, np.ndarray]:
    """Run a `tran_netlist` under `ngspice -b`; (times (T,), voltages (T, n_written))."""
    exe = shutil.which("ngspice")
    if exe is None:
        raise AnalogInputError("ngspice is not installed (Debian package 'ngspice')")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tran.cir"
        path.write_text(netlist)
        res = subprocess.run([exe, "-b", str(path)], capture_output=True, text=True, timeout=timeout, cwd=tmp)
        out = Path(tmp) / "tran.txt"
        if res.returncode != 0 or not out.exists():
            tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"ngspice .tran failed (exit {res.returncode}): {' | '.join(tail)}")
        data = np.loadtxt(out, skiprows=1, ndmin=2)
    return data[:, 0], data[:, 1:]


def ngspice_transient(circuit: CompiledCircuit, G_list, C, src_start, src_end, *, rise: float, duration: float,
                      dt: float, nodes=None, amp_pole=None) -> tuple[np.ndarray, np.ndarray]:
    """ngspice's waveforms per sample: lists of (times, voltages) for each row of src_end
    (amp_pole: single-pole amplifiers, `tran_netlist`)."""
    check_circuit_devices(circuit)
    plan = NetlistPlan(circuit)
    src_start, src_end = np.atleast_2d(src_start), np.atleast_2d(src_end)
    results = []
    for a, b in zip(src_start, src_end):
        text = tran_netlist(circuit, G_list, C, a, b, rise=rise, duration=duration, dt=dt, nodes=nodes, plan=plan,
                            amp_pole=amp_pole)
        results.append(run_tran(text))
    return results
