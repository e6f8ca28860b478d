"""SPICE sign-off on Ray: every test sample through ngspice, compared with the native engine.

The test set is cut into chunks and spread over Ray actors. Each actor is one process holding
one loaded circuit: an in-process `analog.ngspice.NgspiceEngine(processes=0)` (libngspice
loaded once per actor, the netlist once per actor, many samples per ngspice analysis). The
driver keeps every actor two chunks deep, shows a progress bar (rate, ETA), solves the same
samples with the native engine, and compares: max |ΔV| over the node voltages, the share of
samples whose predicted class agrees (disagreeing samples listed), ngspice and native
non-convergences, and throughput per actor.

Ray runs embedded by default (`ray.init(address="local")`: a private instance on this
machine, nothing to start, shut down at the end) or joins a cluster by address (`--address`
or RAY_ADDRESS; every node needs this project installed, as the actors import `analog`).
`analog/` knows nothing of Ray: the actor wrapper is here.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import math
import os
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.runtime import ray_cluster
from pipeline.runtime.ray_cluster import RaySession
from pipeline.flow.artifacts import PipelineError

if TYPE_CHECKING:
    from pipeline.config import RootConfig


class SignoffError(PipelineError):
    """A sign-off request that cannot be carried out (printed as one `error: ...` line)."""


# ---------------------------------------------------------------------------------------
# the actor (one loaded circuit per process)
# ---------------------------------------------------------------------------------------
class SignoffWorker:
    """Body of a sign-off actor: one ngspice engine in this process on one circuit and one
    set of conductances; `solve` returns the node voltages of a chunk and the seconds spent."""

    def __init__(self, circuit, G_list, options: dict | None = None):
        from analog.ngspice import NgspiceEngine
        self.engine = NgspiceEngine(circuit, processes=0, options=options)
        self.G = [np.asarray(g, float) for g in G_list]
        self.samples, self.busy = 0, 0.0

    def where(self) -> dict:
        node = None
        try:
            import ray
            node = ray.get_runtime_context().get_node_id()
        except Exception:
            pass
        return {"pid": os.getpid(), "host": socket.gethostname(), "node": node}

    def warm(self, x) -> dict:
        """Load libngspice and the netlist (one sample solved); the seconds it took."""
        t0 = time.perf_counter()
        self.engine.solve(self.G, np.asarray(x, float))
        return {**self.where(), "load_seconds": time.perf_counter() - t0}

    def solve(self, lo: int, x) -> dict:
        t0, c0 = time.perf_counter(), time.process_time()
        sol = self.engine.solve(self.G, np.asarray(x, float))
        dt = time.perf_counter() - t0
        self.samples += len(x)
        self.busy += dt
        return {"lo": lo, "v": sol.v, "converged": sol.converged, "messages": sol.info.get("messages", {}),
                "seconds": dt, "cpu_seconds": time.process_time() - c0, "pid": os.getpid()}

    def close(self) -> None:
        self.engine.close()


def connect(address: str | None, actors: int | None) -> RaySession:
    """The cluster at `address` (or RAY_ADDRESS), or an embedded Ray with a CPU per actor
    (at least this machine's CPUs) and a small object store (the netlists are small)."""
    return ray_cluster.connect(address, num_cpus=max(os.cpu_count() or 1, actors or 1),
                               object_store_bytes=256 * 1024 ** 2)


# ---------------------------------------------------------------------------------------
# the sign-off itself
# ---------------------------------------------------------------------------------------
@dataclass
class SignoffResult:
    v: np.ndarray                  # (n, n_free) ngspice node voltages (NaN where not converged)
    converged: np.ndarray          # (n,) ngspice converged
    messages: dict                 # sample index → ngspice's complaint
    actors: list = field(default_factory=list)   # per actor: pid, host, node, load_seconds, samples, seconds
    wall_seconds: float = 0.0
    chunks: int = 0


def default_chunk(n: int, actors: int, chunk: int | None) -> int:
    """Samples per task: given, or up to 128 (an ngspice sweep orders the matrix once per
    task, so bigger is faster) but small enough that every actor gets at least 4 tasks."""
    if chunk:
        return int(chunk)
    return max(1, min(128, math.ceil(n / (4 * max(1, actors)))))


def run_ngspice(circuit, G_list, x, actors: int, chunk: int | None = None, options: dict | None = None,
                progress: bool = True, desc: str = "signoff") -> SignoffResult:
    """Solve every row of x on ngspice in `actors` Ray actors (Ray must be initialised)."""
    import ray
    from analog.progress import progress as progress_bar

    x = np.asarray(x, float)
    n = len(x)
    size = default_chunk(n, actors, chunk)
    bounds = deque((lo, min(n, lo + size)) for lo in range(0, n, size))
    n_chunks = len(bounds)
    Actor = ray.remote(num_cpus=1)(SignoffWorker)
    circuit_ref, G_ref = ray.put(circuit), ray.put([np.asarray(g, float) for g in G_list])
    pool = [Actor.options(scheduling_strategy="SPREAD").remote(circuit_ref, G_ref, options) for _ in range(actors)]
    v = np.full((n, circuit.n_free), np.nan)
    ok = np.zeros(n, bool)
    messages: dict[int, str] = {}
    try:
        warm = ray.get([a.warm.remote(x[:1]) for a in pool])
        stats = [{**w, "samples": 0, "seconds": 0.0, "cpu_seconds": 0.0, "chunks": 0} for w in warm]
        pending: dict = {}

        def submit(k: int) -> None:
            if bounds:
                lo, hi = bounds.popleft()
                pending[pool[k].solve.remote(lo, x[lo:hi])] = (k, lo, hi)

        t0 = time.perf_counter()
        for k in range(actors):
            submit(k)
            submit(k)
        with progress_bar(n, desc, "sample", enabled=progress, mininterval=1.0, smoothing=0.1) as bar:
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                k, lo, hi = pending.pop(ref)
                try:
                    res = ray.get(ref)
                except ray.exceptions.RayActorError as exc:
                    raise SignoffError(f"sign-off actor {k} (pid {stats[k]['pid']} on {stats[k]['host']}) died: "
                                       f"{str(exc).splitlines()[0][:200]}") from None
                v[lo:hi], ok[lo:hi] = res["v"], res["converged"]
                messages.update({lo + int(i): m for i, m in res["messages"].items()})
                st = stats[k]
                st["samples"] += hi - lo
                st["seconds"] += res["seconds"]
                st["cpu_seconds"] += res["cpu_seconds"]
                st["chunks"] += 1
                bar.update(hi - lo)
                submit(k)
        wall = time.perf_counter() - t0
    finally:
        for a in pool:
            ray.kill(a)
    for st in stats:
        st["samples_per_s"] = st["samples"] / st["seconds"] if st["seconds"] > 0 else float("nan")
    return SignoffResult(v=v, converged=ok, messages=messages, actors=stats, wall_seconds=wall, chunks=n_chunks)


def native_solve(circuit, G_list, x, batch: int = 4096):
    """Node voltages and convergence of the native engine on every row of x."""
    from analog.engine_cache import cached_engine
    eng = cached_engine({}, circuit, "native")      # a chip with wire resistance gets the wired engine
    vs, oks = [], []
    for lo in range(0, len(x), batch):
        sol = eng.solve(G_list, x[lo: lo + batch])
        vs.append(sol.v)
        oks.append(np.asarray(sol.converged, bool))
    return np.concatenate(vs), np.concatenate(oks)


def predicted(circuit, v: np.ndarray, converged: np.ndarray) -> np.ndarray:
    """Predicted class per sample (argmax of the differential outputs); -1 where the solve
    did not converge (the pipeline's rule: a non-converged sample is wrong)."""
    out = circuit.outputs(np.where(converged[:, None], v, 0.0))
    cls = out.argmax(1)
    cls[~converged] = -1
    return cls


def compare(circuit, x, y, v_native, ok_native, res: SignoffResult, min_agreement: float = 0.999) -> dict:
    """The report: voltages and outputs native vs ngspice, class agreement, non-convergences."""
    both = ok_native & res.converged
    dv = np.abs(res.v - v_native)
    per_sample = np.full(len(x), np.nan)
    if dv.size and both.any():
        per_sample[both] = dv[both].max(axis=1)
    y_nat = circuit.outputs(np.where(ok_native[:, None], v_native, 0.0))
    y_sp = circuit.outputs(np.where(res.converged[:, None], res.v, 0.0))
    dy = np.where(both[:, None], np.abs(y_sp - y_nat), np.nan)
    c_nat, c_sp = predicted(circuit, v_native, ok_native), predicted(circuit, res.v, res.converged)
    agree = (c_nat == c_sp) & both
    disagree = np.flatnonzero(~agree)
    n = len(x)
    y = np.asarray(y) if y is not None else None
    rep = {
        "samples": int(n),
        "max_abs_dv": float(np.nanmax(per_sample)) if both.any() else float("nan"),
        "median_abs_dv": float(np.nanmedian(per_sample)) if both.any() else float("nan"),
        "max_abs_dy": float(np.nanmax(dy)) if both.any() else float("nan"),
        "agreement": float(agree.mean()) if n else float("nan"),
        "disagreements": int(len(disagree)),
        "disagreeing_samples": [int(i) for i in disagree],
        "disagreeing_classes": {int(i): [int(c_nat[i]), int(c_sp[i])] for i in disagree[:1000]},
        "ngspice_nonconverged": int((~res.converged).sum()),
        "ngspice_nonconverged_samples": [int(i) for i in np.flatnonzero(~res.converged)],
        "ngspice_messages": {int(i): m for i, m in sorted(res.messages.items())[:50]},
        "native_nonconverged": int((~ok_native).sum()),
        "min_agreement": float(min_agreement),
    }
    if y is not None and len(y) == n and n:
        rep["accuracy_native"] = float((c_nat == y).mean())
        rep["accuracy_ngspice"] = float((c_sp == y).mean())
    rep["passed"] = bool(n and rep["agreement"] >= min_agreement)
    rep["_per_sample_dv"] = per_sample
    return rep


def throughput(res: SignoffResult) -> dict:
    rates = [a["samples_per_s"] for a in res.actors if a["samples"]]
    n = sum(a["samples"] for a in res.actors)
    return {"actors": len(res.actors), "nodes": len({a["node"] for a in res.actors}),
            "wall_seconds": res.wall_seconds, "samples_per_s": n / res.wall_seconds if res.wall_seconds else float("nan"),
            "samples_per_s_per_actor_mean": float(np.mean(rates)) if rates else float("nan"),
            "samples_per_s_per_actor_min": float(np.min(rates)) if rates else float("nan"),
            "load_seconds_max": max((a["load_seconds"] for a in res.actors), default=float("nan")),
            "chunks": res.chunks}


# ---------------------------------------------------------------------------------------
# report files and plots
# ---------------------------------------------------------------------------------------
def markdown(rep: dict, thr: dict, actors: list, what: str) -> str:
    verdict = "PASSED" if rep["passed"] else "FAILED"
    lines = [f"# SPICE sign-off: {what}", "",
             f"**{verdict}**: {rep['agreement'] * 100:.3f} % of {rep['samples']} samples predict the same class on "
             f"ngspice and the native engine (required ≥ {rep['min_agreement'] * 100:g} %).", "",
             "| figure | value |", "|---|---|",
             f"| samples | {rep['samples']} |",
             f"| max \\|ΔV\\| over node voltages | {rep['max_abs_dv']:.3e} V |",
             f"| median per-sample max \\|ΔV\\| | {rep['median_abs_dv']:.3e} V |",
             f"| max \\|Δy\\| over outputs | {rep['max_abs_dy']:.3e} V |",
             f"| class agreement | {rep['agreement'] * 100:.3f} % ({rep['disagreements']} disagreeing) |",
             f"| ngspice non-convergences | {rep['ngspice_nonconverged']} |",
             f"| native non-convergences | {rep['native_nonconverged']} |"]
    if "accuracy_native" in rep:
        lines += [f"| test accuracy native / ngspice | {rep['accuracy_native']:.4f} / {rep['accuracy_ngspice']:.4f} |"]
    lines += [f"| actors / nodes | {thr['actors']} / {thr['nodes']} |",
              f"| wall time | {thr['wall_seconds']:.1f} s ({thr['samples_per_s']:.1f} samples/s) |",
              f"| samples/s per actor (mean, min) | {thr['samples_per_s_per_actor_mean']:.2f}, "
              f"{thr['samples_per_s_per_actor_min']:.2f} |", ""]
    if rep["disagreements"]:
        shown = rep["disagreeing_samples"][:200]
        more = f" … ({rep['disagreements'] - len(shown)} more in signoff.json)" if rep["disagreements"] > len(shown) else ""
        lines += ["Disagreeing samples (test-set index: native class / ngspice class, −1 = did not converge): "
                  + ", ".join(f"{i}: {rep['disagreeing_classes'][i][0]}/{rep['disagreeing_classes'][i][1]}"
                              for i in shown if i in rep["disagreeing_classes"]) + more, ""]
    lines += ["| actor | host | node | pid | samples | busy s | samples/s | netlist load s |", "|---|---|---|---|---|---|---|---|"]
    for k, a in enumerate(actors):
        lines.append(f"| {k} | {a['host']} | {str(a['node'])[:8]} | {a['pid']} | {a['samples']} | {a['seconds']:.1f} | "
                     f"{a['samples_per_s']:.2f} | {a['load_seconds']:.2f} |")
    return "\n".join(lines) + "\n"


def plots(rep: dict, actors: list, folder: Path, title: str) -> list[Path]:
    from pipeline.flow.plots import _plt, _save
    plt = _plt()
    out = []
    dv = rep["_per_sample_dv"]
    dv = dv[np.isfinite(dv)]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    if dv.size:
        pos = np.maximum(dv, 1e-18)
        bins = np.logspace(np.floor(np.log10(pos.min())), np.ceil(np.log10(pos.max())) + 1e-9, 40)
        ax.hist(pos, bins=bins, color="tab:blue")
        ax.set_xscale("log")
    ax.set_xlabel("per-sample max |V_ngspice − V_native| (V)")
    ax.set_ylabel("samples")
    ax.set_title(f"{title}: {len(dv)} samples, max {rep['max_abs_dv']:.2e} V", fontsize=9)
    ax.grid(alpha=0.3)
    out.append(_save(fig, folder / "signoff_dv_hist.png"))
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    labels = [f"{k}\n{str(a['node'])[:6]}" for k, a in enumerate(actors)]
    ax.bar(range(len(actors)), [a["samples_per_s"] for a in actors], color="tab:green")
    ax.set_xticks(range(len(actors)), labels, fontsize=7)
    ax.set_xlabel("actor (node id)")
    ax.set_ylabel("samples/s (busy time)")
    ax.set_title(f"{title}: ngspice throughput per actor", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    out.append(_save(fig, folder / "signoff_actor_throughput.png"))
    return out


# ---------------------------------------------------------------------------------------
# what to sign off: a trained block or a programmed chip, and its test set
# ---------------------------------------------------------------------------------------
@dataclass
class Source:
    run: object                    # the MLflow run holding the block (or the chips)
    cfg: RootConfig
    circuit: object
    G: list
    x: np.ndarray
    y: np.ndarray
    what: str                      # "block of run …" / "chip 1 of run …, read at t = 0 s"
    analog_run: str
    chip: int | None = None
    model: object = None


def load_source(run_id: str, workdir, chip: int | None = None, read_time: float = 0.0) -> Source:
    """The block (or chip `chip`) a run names, with the test set it is signed off on: the
    embeddings of the run's lineage (images) or the config's tabular test split. Every
    problem is a SignoffError naming the run, before Ray starts."""
    from mlflow.tracking import MlflowClient

    from pipeline.flow import config_from_run, get_run, load_analog
    from pipeline.flow.inputs import test_set_of_run
    from pipeline.flow.lineage import finished_child, refs_of_run, tag
    run = get_run(run_id, what="signoff run")
    stage = run.data.tags.get(tag("stage"), "not a mixsig stage")
    if stage == "cotrain":
        kid = finished_child(MlflowClient(), run, "program" if chip is not None else "train-analog")
        if kid is None:
            raise SignoffError(f"co-training {run.info.run_id} has no finished "
                               f"{'program' if chip is not None else 'train-analog'} run")
        run, stage = kid, kid.data.tags.get(tag("stage"))
    rid = run.info.run_id
    refs = refs_of_run(run)
    if "analog" not in refs:
        raise SignoffError(f"run {rid} ({stage}) names no analog block to sign off (give a train-analog or "
                           f"program run)")
    if chip is not None and "chips" not in refs:
        raise SignoffError(f"--chip {chip}: run {rid} ({stage}) names no programmed chips (give a program run)")
    cfg = config_from_run(rid)
    cache = Path(workdir) / "_cache"
    x, y = test_set_of_run(rid, cfg, refs, cache, "sign the block off on")
    if chip is None:
        model = load_analog(refs["analog"].path(cache))
        return Source(run, cfg, model.circuit, [np.asarray(g, float) for g in model.conductances], x, y,
                      f"block of run {rid[:8]}", refs["analog"].run_id, None, model)
    from pipeline.hardware.chip_files import load_chips
    chips = load_chips(refs["chips"].path(cache))
    if not 0 <= chip < len(chips):
        raise SignoffError(f"--chip {chip}: run {rid} has {len(chips)} chip(s), numbered 0..{len(chips) - 1}")
    c = chips[chip]
    for other in chips:
        if other is not c:
            other.close()
    G = c.conductances_at(read_time, rng=np.random.default_rng(c.seed))     # one read, the same for both engines
    return Source(run, cfg, c.circuit, [np.asarray(g, float) for g in G], x, y,
                  f"chip {chip} of run {rid[:8]}, read at t = {read_time:g} s", refs["analog"].run_id, chip, c)
