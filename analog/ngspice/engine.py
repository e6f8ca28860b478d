"""ngspice engine: the reference simulator, over a pool of libngspice worker processes.

Same contract as `analog.native.NativeEngine` (the `analog.engine.Engine` protocol):
`solve(G_list, x=None, *, src=None, nudge=None, v0=None) -> Solution` on the same
CompiledCircuit (netlist in `analog.netlist`). `v0` is accepted and ignored: ngspice starts
every `op` from its own initial guess.

Modes.
* "loaded" (default): every worker (`analog.ngspice.pool`) loads the netlist once and then
  only alters what changed between samples (input and nudging sources, conductances) before
  each `op`, reading node voltages and source branch currents from the new plot.
* "rebuild": the EBANA way, the speed baseline. Per sample the netlist is regenerated
  through PySpice's `Circuit` object model, loaded, solved and dropped.

`.options` (tolerances, pivrel) and the measurements behind them: `analog.ngspice.options`.

Convergence. A sample whose `op` fails after ngspice's own gmin and source stepping comes
back converged=False, with NaN voltages, currents and power, and its index in
`solution.info["failures"]` (ngspice's complaint in `info["messages"][index]`); the other
samples are unaffected. `solution.raise_on_failure("ngspice")` turns that into a
ConvergenceError listing the indices. A rejected netlist or command is a bug, not a
convergence failure: it raises NgspiceError.
"""
from __future__ import annotations

import math
import time

import numpy as np

from ..circuit import CompiledCircuit
from ..engine import check_solve_inputs
from ..netlist import NetlistPlan
from ..solution import Solution, dissipated_power
from ..wired_engine import wired_power
from ..spice_check import check_circuit_devices
from . import pool as _pool
from .binding import NgspiceError
from .options import check_options

MODES = ("loaded", "rebuild")
G_UPDATES = ("auto", "alter", "reload")


class NgspiceEngine:
    """ngspice reference engine over a pool of worker processes (see the module docstring).

    circuit: the CompiledCircuit; processes: worker processes (one libngspice each), or 0 to
    solve in the calling process (it then loads libngspice itself: for a process that exists to
    hold one circuit, such as a sign-off actor; never in the pipeline's main process);
    mode: "loaded" (alter + op on a circuit loaded once per worker) or "rebuild" (PySpice
    netlist regenerated per sample); options: extra/overriding `.options` (e.g.
    {"reltol": 1e-6}, {"itl1": 5}; None drops a default); g_update: "auto" | "alter" |
    "reload", how loaded workers apply new conductances; chunk: samples per task (default:
    batch split evenly over the processes); start_method: multiprocessing start method.
    """

    name = "ngspice"

    def __init__(self, circuit: CompiledCircuit, processes: int = 2, mode: str = "loaded", options: dict | None = None,
                 g_update: str = "auto", chunk: int | None = None, start_method: str = "forkserver"):
        _pool.check_not_bootstrapping()
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} must be one of {MODES}")
        if g_update not in G_UPDATES:
            raise ValueError(f"g_update={g_update!r} must be 'auto', 'alter' or 'reload'")
        if not (isinstance(processes, int) and processes >= 0):
            raise ValueError(f"processes={processes!r} must be an integer >= 1 (or 0: in this process)")
        self.circuit, self.processes, self.mode = circuit, processes, mode
        self.options = check_options(options)
        self.g_update, self.chunk, self.start_method = g_update, chunk, start_method
        check_circuit_devices(circuit)   # a bad model card fails here, not in a worker
        self.plan = NetlistPlan(circuit, self.options)
        self._ctx = _pool.context(start_method)
        self._pool = None
        self._local: _pool.Worker | None = None      # processes=0: the one in-process worker
        self._G: list[np.ndarray] | None = None
        self._version = 0
        self.last_worker_info: list[dict] = []

    # pool -------------------------------------------------------------------------------------
    def _ensure_pool(self):
        if self._pool is None:
            rebuild_circuit = self.circuit if self.mode == "rebuild" else None
            self._pool = self._ctx.Pool(self.processes, initializer=_pool.worker_init,
                                        initargs=(self.plan, rebuild_circuit, self.g_update))
        return self._pool

    def _run(self, fn, tasks) -> list:
        if self.processes == 0:
            if self._local is None:
                rebuild_circuit = self.circuit if self.mode == "rebuild" else None
                self._local = _pool.Worker(self.plan, rebuild_circuit, self.g_update)
            if fn is _pool.worker_rss:
                return [_pool.worker_rss()]
            return [self._local.run(task) for task in tasks]
        try:
            return _pool.run_tasks(self._ensure_pool(), self.processes, fn, tasks)
        except _pool.WorkerExitError:
            self.close()           # stop the Pool from starting replacement workers forever
            raise

    def close(self) -> None:
        self._local = None     # (processes=0: libngspice stays loaded in this process; the next worker reuses it)
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

    def worker_rss_kb(self) -> dict[int, int]:
        """VmRSS (kB) of each worker process, by pid (asks each worker once, best effort)."""
        return dict(self._run(_pool.worker_rss, list(range(max(1, self.processes)))))

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
        src, nudge = check_solve_inputs(c, x, src, nudge)
        B = src.shape[0]
        G = self._conductance_version(G_list)
        n_values = c.n_free + c.n_sources
        values = np.full((B, n_values), np.nan)
        ok = np.zeros(B, bool)
        messages: dict[int, str] = {}
        t0 = time.perf_counter()
        if B:
            size = self.chunk or max(1, math.ceil(B / max(1, self.processes)))
            bounds = [(lo, min(B, lo + size)) for lo in range(0, B, size)]
            tasks = [{"mode": self.mode, "version": self._version, "G": G, "src": src[lo:hi],
                      "nudge": None if nudge is None else nudge[lo:hi]} for lo, hi in bounds]
            results = self._run(_pool.worker_run, tasks)
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
        power = np.full(B, np.nan)       # only converged rows (an absurd source would overflow)
        power[ok] = dissipated_power(c, G, v[ok], src[ok]) if getattr(c, "wire_g", None) is None \
            else wired_power(c, G, v[ok], src[ok])
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
