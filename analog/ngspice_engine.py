"""ngspice engine (PySpice's libngspice binding): the reference simulator.

Same contract as `analog.native.NativeEngine`: `solve(G_list, x=None, *, src=None,
nudge=None, v0=None) -> Solution` on the same CompiledCircuit (netlist in
`analog.netlist`). `v0` is accepted and ignored: ngspice starts every `op` from its own
initial guess.

Modes.
* "loaded" (default): every worker process (a `multiprocessing` pool, start method
  'forkserver', one libngspice per process because it is not thread-safe) loads the netlist
  once. Per sample it changes only the input sources whose value changed (`alter V_x
  dc=value`) and the nudging sources (`alter IPk dc=value`), runs `op`, reads the node
  voltages and source branch currents from the new plot, and destroys the plot so memory
  stays flat. New conductances (a new version of G) are applied with `alter Rb_i_j =
  value` on the resistors whose value changed, or, when most of them changed and
  `g_update="auto"`, by reloading the netlist (measured on the Fashion-sized block:
  altering all 32k resistors ≈0.7 s, reloading ≈0.35 s).
* "rebuild": the EBANA way, the speed baseline. Per sample the netlist is regenerated
  through PySpice's `Circuit` object model, loaded, solved and dropped.

Tolerances. ngspice's default reltol 1e-3 is too loose to agree to 1e-6 V: with vntol
1e-6 V and abstol 1e-12 A it accepts a Newton update of 0.1 % of a node voltage as
converged, so agreement is luck (measured on the agreement-test circuits: 1.9e-8 V worst,
but nothing bounds it). We use `.options reltol=1e-9 vntol=1e-12 abstol=1e-15 gmin=1e-16`:
Newton converges quadratically, so once the update is below ~1e-9·|V| the error is at
rounding level (measured: ≤ 3e-12 V and ≤ 1e-15 A against the native engine on all
devices, diodes conducting). reltol 1e-6 and 1e-12 gave the same figures and no failures
on those circuits; 1e-9 keeps three orders of margin on either side (an op costs the same:
~4 Newton iterations, the time is in ngspice's matrix reordering). ngspice's own `gmin`
option is tiny (1e-16 S) because gmin here is an explicit element (RGMIN shunts of
circuit.gmin, modelled identically by the native engine); ngspice's default would add
1e-12 S across every junction (measured: 8e-9 V of disagreement).

Speed. Every `op` is a new analysis job: ngspice tears the matrix down and sets it up again
(CKTdoJob → CKTunsetup/CKTsetup), so each operating point starts with a full Markowitz
reordering of the sparse matrix; an `alter` cannot keep the old ordering. On the
Fashion-sized block (426 nodes, 32k resistors, the 100×302 crossbar dense) that reordering
was ~0.37 s of the ~0.43 s an `op` took (ngspice's `rusage`). Measured on that netlist:
without the amplifiers' backward CCCS the reordering costs 4.5× less, and with Sparse's
relative pivot threshold lowered from ngspice's default pivrel=1e-3 to 1e-5 it costs 2.6×
less (~0.14 s; an `op` ~0.2 s); smaller pivrel (1e-6…1e-12) was no faster. The likely
reason: node-equation diagonals are sums of conductances (~1e-3 S) while the amplifier
entries in the same columns are of order 1 (gain 4, 1/4), so with pivrel=1e-3 many
diagonal candidates fail the threshold test and the pivot search scans the whole active
matrix. We set pivrel=1e-5; node voltages still agree with the native engine to 1e-14 V.
alter + reading the vectors cost ~5 ms. This build has no KLU (`.options klu` is ignored).

Convergence. When `op` fails after ngspice's own gmin and source stepping (ngspice prints
"... simulation(s) aborted" and leaves a plot with empty vectors), the sample is marked
converged=False, its values are NaN and its index is listed in `solution.info["failures"]`.
Every plot is destroyed before the next `op`, so a value can never come from an older plot.
"""
from __future__ import annotations

import functools
import logging
import math
import multiprocessing as mp
import os
import time

import numpy as np

from .circuit import CompiledCircuit
from .netlist import NetlistPlan, _num, build_circuit, pyspice_netlist
from .solution import Solution, dissipated_power
from .spice_check import check_circuit_devices

_MODES = ("loaded", "rebuild")


def _silence_pyspice() -> None:
    # "Unsupported Ngspice version 39" and ngspice's stderr notes are logged as errors by
    # PySpice; both are harmless here (we inspect ngspice's output ourselves).
    for name in ("PySpice", "PySpice.Spice.NgSpice.Shared", "PySpice.Spice.NgSpice.Shared.NgSpiceShared"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    import warnings
    warnings.filterwarnings("ignore", message=".*Unsupported Ngspice version.*")


class NgspiceError(RuntimeError):
    """ngspice rejected a netlist or a command (a bug, not a convergence failure)."""


class _Ngspice:
    """One libngspice instance in this process, driven through PySpice's binding but with
    our own command wrapper (PySpice raises on any stderr note) and vector reader."""

    #: free ngspice's command history every so many commands (it keeps every command)
    RELEASE_EVERY = 2000

    def __init__(self):
        _silence_pyspice()
        from PySpice.Spice.NgSpice.Shared import NgSpiceShared, ffi

        self.shared = NgSpiceShared.new_instance()
        self.lib = self.shared._ngspice_shared
        self.ffi = ffi
        self.n_commands = 0
        self.loaded = False

    def command(self, cmd: str) -> tuple[list[str], list[str]]:
        if self.n_commands >= self.RELEASE_EVERY:
            self.lib.ngSpice_Command(self.ffi.NULL)
            self.n_commands = 0
        self.n_commands += 1
        self.shared.clear_output()
        rc = self.lib.ngSpice_Command(cmd.encode("ascii"))
        if rc:
            raise NgspiceError(f"ngspice command {cmd!r} returned {rc}")
        return list(self.shared._stdout), list(self.shared._stderr)

    def commands(self, cmds) -> None:
        """Run set-up commands (alter …); raise if ngspice reports an error."""
        for cmd in cmds:
            _, err = self.command(cmd)
            if err and any(("error" in e.lower() or "no such" in e.lower()) for e in err):
                raise NgspiceError(f"ngspice rejected {cmd!r}: {' | '.join(err)}")

    def load(self, text: str) -> None:
        if self.loaded:
            self.command("destroy all")
            self.command("remcirc")
        lines = [ln for ln in text.splitlines() if ln.strip()] + [""]
        keep = [self.ffi.new("char[]", ln.encode("utf8")) for ln in lines] + [self.ffi.NULL]
        self.shared.clear_output()
        rc = self.lib.ngSpice_Circ(self.ffi.new("char *[]", keep))
        out, err = list(self.shared._stdout), list(self.shared._stderr)
        bad = [e for e in out + err if "error" in e.lower()]
        if rc or bad:
            raise NgspiceError("ngspice could not load the netlist: " + " | ".join(bad or err or [f"rc={rc}"]))
        self.loaded = True

    def vector(self, name: bytes) -> np.ndarray | None:
        info = self.lib.ngGet_Vec_Info(name)
        if info == self.ffi.NULL or info.v_length < 1 or info.v_realdata == self.ffi.NULL:
            return None
        return np.frombuffer(self.ffi.buffer(info.v_realdata, info.v_length * 8), dtype=np.float64).copy()

    def current_plot(self) -> str:
        return self.ffi.string(self.lib.ngSpice_CurPlot()).decode()

    def operating_point(self, names: list[bytes]) -> tuple[np.ndarray | None, str]:
        """Run `op` on the loaded circuit; return the values of the named vectors, or None
        and ngspice's complaint when it did not converge."""
        self.command("destroy all")            # no plot can survive from an earlier sample
        out, err = self.command("op")
        plot = self.current_plot()
        text = "\n".join(err + out)
        if "aborted" in text.lower() or not plot.startswith("op"):
            self.command("destroy all")
            return None, " | ".join(e for e in err[-4:])
        prefix = plot.encode() + b"."
        values = np.empty(len(names))
        for k, name in enumerate(names):
            vec = self.vector(prefix + name)
            if vec is None:
                self.command("destroy all")
                return None, f"vector {name.decode()} missing or empty in plot {plot}"
            values[k] = vec[0]
        self.command("destroy all")
        if not np.all(np.isfinite(values)):
            return None, "non-finite values in the operating point"
        return values, ""


def _rss_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


class _Worker:
    """State of one worker process: the loaded circuit and what was last altered."""

    def __init__(self, plan: NetlistPlan, circuit_for_rebuild: CompiledCircuit | None, g_update: str):
        self.plan = plan
        self.circuit = circuit_for_rebuild
        self.g_update = g_update
        self.spice = _Ngspice()
        self.version = None
        self.G: list[np.ndarray] | None = None
        self.src: np.ndarray | None = None
        self.nudge: np.ndarray | None = None
        self.names = [n.lower().encode() for n in plan.free_nodes] + [b.encode() for b in plan.source_branches]
        self.stats = {"loads": 0, "resistor_alters": 0, "source_alters": 0, "ops": 0,
                      "op_wall_s": 0.0, "op_cpu_s": 0.0, "task_wall_s": 0.0}

    # loaded mode ------------------------------------------------------------------------------
    def _load(self, G_list, src_row, nudge_row) -> None:
        self.spice.load(self.plan.text(G_list, src_row, nudge_row, analysis=False))
        self.G = [np.array(G, dtype=float) for G in G_list]
        self.src = np.array(src_row, dtype=float)
        self.nudge = self.plan.nudge_values(nudge_row, self.plan.n_outputs).copy()
        self.stats["loads"] += 1

    def _update_G(self, G_list, src_row, nudge_row) -> None:
        changed = [np.flatnonzero(G.ravel() != old.ravel()) for G, old in zip(G_list, self.G)]
        n_changed = sum(len(c) for c in changed)
        n_total = sum(G.size for G in G_list)
        if self.g_update == "reload" or (self.g_update == "auto" and n_changed > 0.25 * n_total):
            self._load(G_list, src_row, nudge_row)
            return
        cmds = []
        for b, (G, idx) in enumerate(zip(G_list, changed)):
            cols = G.shape[1]
            R = 1.0 / G.ravel()
            cmds += [f"alter R{b}_{i // cols}_{i % cols} = {_num(R[i])}" for i in idx]
        self.spice.commands(cmds)
        self.stats["resistor_alters"] += len(cmds)
        self.G = [np.array(G, dtype=float) for G in G_list]

    def _set_sources(self, src_row, nudge_row) -> None:
        cmds = [f"alter {self.plan.source_elems[k]} dc={_num(src_row[k])}"
                for k in np.flatnonzero(src_row != self.src)]
        nudge = self.plan.nudge_values(nudge_row, self.plan.n_outputs)
        for k in np.flatnonzero(nudge != self.nudge):
            cmds.append(f"alter {self.plan.nudge_plus[k]} dc={_num(nudge[k])}")
            cmds.append(f"alter {self.plan.nudge_minus[k]} dc={_num(-nudge[k])}")
        self.spice.commands(cmds)
        self.stats["source_alters"] += len(cmds)
        self.src = np.array(src_row, dtype=float)
        self.nudge = nudge.copy()

    def run(self, task: dict) -> dict:
        src, nudge, G_list = task["src"], task["nudge"], task["G"]
        B = src.shape[0]
        t_task = time.perf_counter()
        values = np.full((B, len(self.names)), np.nan)
        ok = np.zeros(B, bool)
        messages = {}
        for i in range(B):
            nudge_row = None if nudge is None else nudge[i]
            try:
                if task["mode"] == "rebuild":
                    ckt = build_circuit(self.circuit, G_list, src_row=src[i], nudge_row=nudge_row, plan=self.plan)
                    self.spice.load(pyspice_netlist(ckt))
                    self.version = None  # the loaded circuit no longer tracks a G version
                    self.stats["loads"] += 1
                else:
                    if not self.spice.loaded or self.G is None:
                        self._load(G_list, src[i], nudge_row)
                        self.version = task["version"]
                    elif task["version"] != self.version:
                        self._update_G(G_list, src[i], nudge_row)
                        self.version = task["version"]
                    self._set_sources(src[i], nudge_row)
                w0, c0 = time.perf_counter(), time.process_time()
                vals, why = self.spice.operating_point(self.names)
                self.stats["ops"] += 1
                self.stats["op_wall_s"] += time.perf_counter() - w0
                self.stats["op_cpu_s"] += time.process_time() - c0
            except NgspiceError as exc:
                # a rejected netlist or command is a bug, not a convergence failure: forget
                # the loaded state (the next task reloads) and let the caller raise
                self.G, self.version = None, None
                return {"error": str(exc), "pid": os.getpid()}
            if vals is None:
                messages[i] = why
            else:
                values[i], ok[i] = vals, True
        self.stats["task_wall_s"] += time.perf_counter() - t_task
        return {"values": values, "ok": ok, "messages": messages, "rss_kb": _rss_kb(), "pid": os.getpid(),
                "stats": dict(self.stats)}


_WORKER: _Worker | None = None


def _worker_init(plan, circuit, g_update):
    global _WORKER
    _WORKER = _Worker(plan, circuit, g_update)


def _worker_run(task):
    return _WORKER.run(task)


def _worker_rss(_=None):
    return os.getpid(), _rss_kb()


def _context(start_method: str):
    """Multiprocessing context for the workers. Default 'forkserver': the server process
    imports this module once and forks every worker from that single-threaded, libngspice-
    free state, so a new engine costs ~0.1 s per worker instead of a fresh interpreter
    ('spawn', several seconds on a busy 2-core machine). Plain 'fork' would copy whatever
    threads (BLAS, TensorFlow) the caller runs."""
    ctx = mp.get_context(start_method)
    if start_method == "forkserver":
        ctx.set_forkserver_preload(["analog.ngspice_engine"])
    return ctx


@functools.lru_cache(maxsize=1)
def ngspice_version() -> str:
    """ngspice's version string (e.g. 'ngspice-39'), read from the shared library in a
    subprocess so that this process never loads libngspice itself."""
    import subprocess
    import sys
    code = ("import logging; logging.disable(logging.CRITICAL)\n"
            "from PySpice.Spice.NgSpice.Shared import NgSpiceShared\n"
            "ng = NgSpiceShared.new_instance()\n"
            "out = ng._ngspice_shared.ngSpice_Command(b'version -s')\n"
            "print('\\n'.join(ng._stdout))")
    try:
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        for line in res.stdout.splitlines():
            if "ngspice-" in line:
                return "ngspice-" + line.split("ngspice-")[1].split()[0].strip(" *,")
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        res = subprocess.run(["ngspice", "-v"], capture_output=True, text=True, timeout=30)
        for line in res.stdout.splitlines():
            if "ngspice-" in line:
                return "ngspice-" + line.split("ngspice-")[1].split()[0].strip(" *,")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


class NgspiceEngine:
    """ngspice reference engine over a pool of worker processes (see the module docstring).

    circuit: the CompiledCircuit; processes: worker processes (one libngspice each);
    mode: "loaded" (alter + op on a circuit loaded once per worker) or "rebuild" (PySpice
    netlist regenerated per sample); options: extra/overriding `.options` (e.g.
    {"reltol": 1e-6}, {"itl1": 5}); g_update: "auto" | "alter" | "reload", how loaded
    workers apply new conductances; chunk: samples per task (default: batch split evenly
    over the processes).
    """

    name = "ngspice"

    def __init__(self, circuit: CompiledCircuit, processes: int = 2, mode: str = "loaded", options: dict | None = None,
                 g_update: str = "auto", chunk: int | None = None, start_method: str = "forkserver"):
        if mode not in _MODES:
            raise ValueError(f"mode={mode!r} must be one of {_MODES}")
        if g_update not in ("auto", "alter", "reload"):
            raise ValueError(f"g_update={g_update!r} must be 'auto', 'alter' or 'reload'")
        if not (isinstance(processes, int) and processes >= 1):
            raise ValueError(f"processes={processes!r} must be an integer >= 1")
        self.circuit, self.processes, self.mode = circuit, processes, mode
        self.options = dict(options or {})
        self.g_update, self.chunk = g_update, chunk
        check_circuit_devices(circuit)   # a bad model card fails here, not in a worker
        self.plan = NetlistPlan(circuit, self.options)
        self._ctx = _context(start_method)
        self._pool = None
        self._G: list[np.ndarray] | None = None
        self._version = 0
        self.last_worker_info: list[dict] = []

    # pool -------------------------------------------------------------------------------------
    def _ensure_pool(self):
        if self._pool is None:
            rebuild_circuit = self.circuit if self.mode == "rebuild" else None
            self._pool = self._ctx.Pool(self.processes, initializer=_worker_init,
                                        initargs=(self.plan, rebuild_circuit, self.g_update))
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __getstate__(self):  # engines travel with pickled models: drop the pool
        state = self.__dict__.copy()
        state["_pool"] = None
        state["_ctx"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._ctx = _context("forkserver")

    def worker_rss_kb(self) -> dict[int, int]:
        """VmRSS (kB) of each worker process, by pid (asks each worker once, best effort)."""
        pool = self._ensure_pool()
        return dict(pool.map(_worker_rss, range(self.processes), chunksize=1))

    # solve ------------------------------------------------------------------------------------
    def _conductance_version(self, G_list) -> list[np.ndarray]:
        G_list = self.plan.check_conductances(G_list)
        if self._G is None or not all(np.array_equal(a, b) for a, b in zip(self._G, G_list)):
            self._G = [np.array(G, copy=True) for G in G_list]
            self._version += 1
        return self._G

    def solve(self, G_list, x=None, *, src=None, nudge=None, v0=None) -> Solution:
        """Operating points for a batch: x (B, n_features) volts relative to V_ref (or the
        source voltages `src`), nudge (B, n_outputs) currents I_k; v0 is ignored."""
        c = self.circuit
        if src is None:
            if x is None:
                raise ValueError("solve() needs inputs x or source voltages src")
            src = c.source_voltages(x)
        src = np.asarray(src, dtype=float)
        if src.ndim != 2 or src.shape[1] != c.n_sources:
            raise ValueError(f"source voltages of shape {src.shape}, expected (batch, {c.n_sources})")
        if not np.all(np.isfinite(src)):
            raise ValueError("non-finite source voltage")
        B = src.shape[0]
        if nudge is not None:
            nudge = np.asarray(nudge, dtype=float)
            if nudge.shape != (B, c.n_outputs):
                raise ValueError(f"nudging currents of shape {nudge.shape}, expected {(B, c.n_outputs)}")
            if not np.all(np.isfinite(nudge)):
                raise ValueError("non-finite nudging current")
        G = self._conductance_version(G_list)
        n_values = c.n_free + c.n_sources
        values = np.full((B, n_values), np.nan)
        ok = np.zeros(B, bool)
        messages: dict[int, str] = {}
        t0 = time.perf_counter()
        if B:
            size = self.chunk or max(1, math.ceil(B / self.processes))
            bounds = [(lo, min(B, lo + size)) for lo in range(0, B, size)]
            tasks = [{"mode": self.mode, "version": self._version, "G": G, "src": src[lo:hi],
                      "nudge": None if nudge is None else nudge[lo:hi]} for lo, hi in bounds]
            results = self._ensure_pool().map(_worker_run, tasks, chunksize=1)
            self.last_worker_info = []
            errors = [res["error"] for res in results if "error" in res]
            if errors:
                raise NgspiceError(errors[0])
            for (lo, hi), res in zip(bounds, results):
                values[lo:hi] = res["values"]
                ok[lo:hi] = res["ok"]
                messages.update({lo + i: m for i, m in res["messages"].items()})
                self.last_worker_info.append({k: res[k] for k in ("pid", "rss_kb", "stats")})
        v = values[:, : c.n_free].copy()
        currents = -values[:, c.n_free:]          # delivered current = −I(V#branch)
        v[~ok] = np.nan
        currents[~ok] = np.nan
        power = dissipated_power(c, G, v, src)
        failures = np.flatnonzero(~ok).tolist()
        return Solution(v=v, src=src, source_currents=currents, converged=ok, iterations=np.zeros(B, int),
                        power=power, nudge=nudge,
                        info={"failures": failures, "messages": messages, "engine": "ngspice", "mode": self.mode,
                              "seconds": time.perf_counter() - t0})


def benchmark_ngspice(circuit: CompiledCircuit, G_list, x, processes: int = 2, rebuild_samples: int = 4,
                      options: dict | None = None) -> dict:
    """Samples/s of the loaded engine (alter + op) on all of x and of the rebuild-per-sample
    baseline (PySpice netlist per sample) on the first `rebuild_samples`, with `processes`
    workers each, plus load time, the loaded/rebuild ratio and the workers' memory."""
    x = np.asarray(x, dtype=float)
    res: dict = {"processes": processes, "samples_loaded": len(x),
                 "samples_rebuild": min(rebuild_samples, len(x)),
                 "resistors": int(sum(np.size(G) for G in G_list))}
    with NgspiceEngine(circuit, processes=processes, mode="loaded", options=options) as eng:
        t0 = time.perf_counter()
        warm = eng.solve(G_list, x[:processes])          # loads the netlist in every worker
        res["ngspice_load_seconds"] = time.perf_counter() - t0
        rss0 = eng.worker_rss_kb()
        t0 = time.perf_counter()
        sol = eng.solve(G_list, x)
        dt = time.perf_counter() - t0
        res["ngspice_loaded_samples_per_s"] = len(x) / dt
        rss1 = eng.worker_rss_kb()
        res["ngspice_loaded_worker_rss_mb"] = sorted(v / 1024 for v in rss1.values())
        res["ngspice_loaded_rss_growth_mb"] = max((rss1[p] - rss0.get(p, rss1[p])) / 1024 for p in rss1)
        res["ngspice_loaded_nonconverged"] = int((~sol.converged).sum()) + int((~warm.converged).sum())
        res["ngspice_loaded_workers_used"] = len({w["pid"] for w in eng.last_worker_info})
        last = {w["pid"]: w["stats"] for w in eng.last_worker_info}
        ops = sum(st["ops"] for st in last.values())
        res["ngspice_op_wall_ms"] = 1e3 * sum(st["op_wall_s"] for st in last.values()) / ops
        res["ngspice_op_cpu_ms"] = 1e3 * sum(st["op_cpu_s"] for st in last.values()) / ops
    xr = x[: res["samples_rebuild"]]
    with NgspiceEngine(circuit, processes=processes, mode="rebuild", options=options) as eng:
        eng.solve(G_list, xr[:1])                        # start the workers
        t0 = time.perf_counter()
        sol_r = eng.solve(G_list, xr)
        res["ngspice_rebuild_samples_per_s"] = len(xr) / (time.perf_counter() - t0)
    ok = sol.converged[: len(xr)] & sol_r.converged
    res["max_abs_dv_loaded_vs_rebuild"] = float(np.abs(sol.v[: len(xr)][ok] - sol_r.v[ok]).max()) if ok.any() else float("nan")
    res["ratio_loaded_vs_rebuild"] = res["ngspice_loaded_samples_per_s"] / res["ngspice_rebuild_samples_per_s"]
    return res
