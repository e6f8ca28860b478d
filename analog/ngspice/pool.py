"""Worker processes of the ngspice engine: one libngspice per process (it is not
thread-safe and keeps global state), each holding its loaded netlist between tasks.

Start method. The default 'forkserver' starts one server process that imports this module
once and forks every worker from that single-threaded, libngspice-free state, so a new
engine costs ~0.1 s per worker instead of a fresh interpreter ('spawn', several seconds on
a busy 2-core machine). Plain 'fork' would copy whatever threads (BLAS, TensorFlow) the
caller runs.

The main-module guard. With 'forkserver' and 'spawn', every worker imports the caller's
main module (as `__mp_main__`) before it runs anything. A script that creates and uses an
engine at module level, without `if __name__ == "__main__":`, then makes each worker try to
start a pool of its own; the worker dies, `multiprocessing.Pool` starts a replacement, and
the caller used to wait forever (likewise when a worker is killed or crashes mid-task: its
task is lost). Two checks stop that: `check_not_bootstrapping` (called by the engine's
constructor) raises `MainGuardError` inside such a worker at once, and `run_tasks` (the
parent's side) raises `WorkerExitError` as soon as the pool has had to replace a worker, so
the caller gets a message that names the fix instead of hanging.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time

import numpy as np

from ..circuit import CompiledCircuit
from ..netlist import NetlistPlan, _num, build_circuit, pyspice_netlist
from .binding import Ngspice, NgspiceError

GUARD_HINT = ('the ngspice engine runs in worker processes that re-import your main module; put the code '
              'that creates and uses the engine (or model) under `if __name__ == "__main__":`')


class MainGuardError(RuntimeError):
    """An engine was created while a worker process was importing the caller's main module."""


class WorkerExitError(RuntimeError):
    """ngspice worker processes exited (or kept being replaced) while a solve was waiting."""


def check_not_bootstrapping() -> None:
    """Raise MainGuardError when called from the module-level code of a main module that a
    multiprocessing child is importing (the script has no `if __name__ == "__main__":`)."""
    inheriting = getattr(mp.current_process(), "_inheriting", False)   # set by multiprocessing.spawn
    frame = sys._getframe(1)
    while frame is not None and not inheriting:
        inheriting = frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__mp_main__"
        frame = frame.f_back
    if inheriting:
        raise MainGuardError(f"process {os.getpid()} is a worker importing the main module: {GUARD_HINT}")


def context(start_method: str):
    """Multiprocessing context for the workers (see the module docstring)."""
    ctx = mp.get_context(start_method)
    if start_method == "forkserver":
        ctx.set_forkserver_preload([__name__])
    return ctx


def run_tasks(pool, processes: int, fn, tasks, poll_s: float = 0.25) -> list:
    """pool.map(fn, tasks) that cannot wait forever on dead workers: a Pool silently replaces
    a worker that exits, so more distinct worker pids than `processes` means workers are
    dying (a missing main guard, or a crash inside libngspice) and WorkerExitError is raised."""
    def pids() -> set[int]:
        return {p.pid for p in list(getattr(pool, "_pool", [])) if p.pid is not None}   # the Pool's processes

    seen = pids()
    result = pool.map_async(fn, tasks, chunksize=1)
    while True:
        try:
            return result.get(timeout=poll_s)
        except mp.TimeoutError:
            pass
        seen |= pids()
        if len(seen) > processes:
            main = getattr(sys.modules.get("__main__"), "__file__", None)
            where = f" (main module {main})" if main else ""
            raise WorkerExitError(f"ngspice worker processes keep exiting: {len(seen)} started for {processes} "
                                  f"slots{where}. A worker crashed or was killed, or, if this is a script, "
                                  f"{GUARD_HINT}.")


def rss_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


class Worker:
    """State of one worker process: the loaded circuit and what was last altered.

    Loaded mode: the netlist is loaded once; per sample only the input sources whose value
    changed (`alter V_x dc=value`) and the nudging sources are altered before `op`. New
    conductances (a new version of G) are applied with `alter R…` on the resistors whose
    value changed, or, when most of them changed and g_update="auto", by reloading the
    netlist (Fashion-sized block: altering all 32k resistors ≈0.7 s, reloading ≈0.35 s).
    Rebuild mode: the netlist is regenerated through PySpice's `Circuit` per sample.
    """

    def __init__(self, plan: NetlistPlan, circuit_for_rebuild: CompiledCircuit | None, g_update: str):
        self.plan = plan
        self.circuit = circuit_for_rebuild
        self.g_update = g_update
        self.spice = Ngspice()
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
        return {"values": values, "ok": ok, "messages": messages, "rss_kb": rss_kb(), "pid": os.getpid(),
                "stats": dict(self.stats)}


_WORKER: Worker | None = None


def worker_init(plan, circuit, g_update):
    global _WORKER
    _WORKER = Worker(plan, circuit, g_update)


def worker_run(task):
    return _WORKER.run(task)


def worker_rss(_=None):
    return os.getpid(), rss_kb()
