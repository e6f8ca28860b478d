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
the caller would wait forever (likewise when a worker is killed or crashes mid-task: its
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


SWEEP_SOURCE = "vsweepidx"      # the dummy source a loaded netlist's dc sweep runs over


def external_netlist(plan: NetlistPlan, G_list) -> str:
    """The loaded-mode netlist: the plan's, with the input sources and the nudging current
    sources `external` (their values come from the caller per sample, see
    `analog.ngspice.binding`) and a dummy source `vsweepidx` on its own node, which a `dc`
    sweep steps over the sample index. The circuit the samples see is unchanged."""
    text = plan.text(G_list, np.zeros(plan.n_sources), None, analysis=False)
    ext = set(plan.source_elems) | set(plan.nudge_plus) | set(plan.nudge_minus)
    node = "sweepidx"
    while node in plan.nodes:
        node += "_"
    lines = []
    for line in text.splitlines():
        head, _, rest = line.partition(" ")
        if head in ext:
            a, b = rest.split()[:2]
            line = f"{head} {a} {b} external"
        elif line == ".end":
            lines += [f"{SWEEP_SOURCE.upper()} {node} 0 dc 0", f"RSWEEPIDX {node} 0 1"]
        lines.append(line)
    return "\n".join(lines) + "\n"


def external_rows(plan: NetlistPlan, src, nudge) -> np.ndarray:
    """Per sample, the values of the external sources in `external_names` order: the source
    voltages, then +I_k (IP<k>) and −I_k (IM<k>)."""
    nudge = np.zeros((len(src), plan.n_outputs)) if nudge is None else np.asarray(nudge, float)
    return np.concatenate([np.asarray(src, float), nudge, -nudge], axis=1)


def external_names(plan: NetlistPlan) -> list[str]:
    return list(plan.source_elems) + list(plan.nudge_plus) + list(plan.nudge_minus)


class Worker:
    """State of one worker process: the loaded circuit.

    Loaded mode: the netlist is loaded once, with its input and nudging sources `external`;
    a task's samples are solved by `Ngspice.sweep` (one `dc` analysis over many samples, the
    matrix ordered once per sweep; a sample the sweep cannot solve is solved alone by `op`).
    New conductances (a new version of G) are applied with `alter R…` on the resistors whose
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
        self.names = [n.lower().encode() for n in plan.free_nodes] + [b.encode() for b in plan.source_branches]
        self.stats = {"loads": 0, "resistor_alters": 0, "source_alters": 0, "ops": 0, "sweeps": 0,
                      "op_fallbacks": 0, "op_wall_s": 0.0, "op_cpu_s": 0.0, "task_wall_s": 0.0}

    # loaded mode ------------------------------------------------------------------------------
    def _load(self, G_list) -> None:
        self.spice.load(external_netlist(self.plan, G_list))
        self.spice.set_external(external_names(self.plan))
        self.G = [np.array(G, dtype=float) for G in G_list]
        self.stats["loads"] += 1

    def _update_G(self, G_list) -> None:
        changed = [np.flatnonzero(G.ravel() != old.ravel()) for G, old in zip(G_list, self.G)]
        n_changed = sum(len(c) for c in changed)
        n_total = sum(G.size for G in G_list)
        if self.g_update == "reload" or (self.g_update == "auto" and n_changed > 0.25 * n_total):
            self._load(G_list)
            return
        cmds = []
        for b, (G, idx) in enumerate(zip(G_list, changed)):
            cols = G.shape[1]
            R = 1.0 / G.ravel()
            cmds += [f"alter R{b}_{i // cols}_{i % cols} = {_num(R[i])}" for i in idx]
        self.spice.commands(cmds)
        self.stats["resistor_alters"] += len(cmds)
        self.G = [np.array(G, dtype=float) for G in G_list]

    def _run_loaded(self, task: dict) -> dict:
        src, nudge, G_list = task["src"], task["nudge"], task["G"]
        t_task = time.perf_counter()
        try:
            if not self.spice.loaded or self.G is None:
                self._load(G_list)
                self.version = task["version"]
            elif task["version"] != self.version:
                self._update_G(G_list)
                self.version = task["version"]
            rows = external_rows(self.plan, src, nudge)
            w0, c0 = time.perf_counter(), time.process_time()
            values, ok, messages, st = self.spice.sweep(rows, self.names, SWEEP_SOURCE)
        except NgspiceError as exc:
            # a rejected netlist or command is a bug, not a convergence failure: forget the
            # loaded state (the next task reloads) and let the caller raise
            self.G, self.version = None, None
            return {"error": str(exc), "pid": os.getpid()}
        self.stats["ops"] += len(rows)
        self.stats["sweeps"] += st["sweeps"]
        self.stats["op_fallbacks"] += st["op_fallbacks"]
        self.stats["newton_loads"] = self.stats.get("newton_loads", 0.0) + st["loads"]
        self.stats["op_wall_s"] += time.perf_counter() - w0
        self.stats["op_cpu_s"] += time.process_time() - c0
        self.stats["task_wall_s"] += time.perf_counter() - t_task
        return {"values": values, "ok": ok, "messages": messages, "rss_kb": rss_kb(), "pid": os.getpid(),
                "stats": dict(self.stats)}

    def run(self, task: dict) -> dict:
        if task["mode"] != "rebuild":
            return self._run_loaded(task)
        src, nudge, G_list = task["src"], task["nudge"], task["G"]
        B = src.shape[0]
        t_task = time.perf_counter()
        values = np.full((B, len(self.names)), np.nan)
        ok = np.zeros(B, bool)
        messages = {}
        for i in range(B):
            nudge_row = None if nudge is None else nudge[i]
            try:
                ckt = build_circuit(self.circuit, G_list, src_row=src[i], nudge_row=nudge_row, plan=self.plan)
                self.spice.load(pyspice_netlist(ckt))
                self.version, self.G = None, None   # the loaded circuit no longer tracks a G version
                self.stats["loads"] += 1
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
