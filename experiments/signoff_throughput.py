"""SPICE sign-off figures (issue 16): where one sample's ngspice time goes, samples/s per Ray
actor, 1 vs 2 actors on this machine, and a simulated multi-node cluster.

    .venv/bin/python experiments/signoff_throughput.py profile  [--samples 128]
    .venv/bin/python experiments/signoff_throughput.py scaling  [--samples 512 --chunk 64 --rounds 3]
    .venv/bin/python experiments/signoff_throughput.py cluster  [--samples 256 --chunk 32 --nodes 2]
    .venv/bin/python experiments/signoff_throughput.py sessions [--samples 96 --rounds 3]   # no Ray

All on the Fashion-sized block of `mixsig bench` (150 inputs + 150 inverted + 2 bias → 100
hidden nodes with two diodes and an amplifier each → 20 outputs; 32k conductances) with
inputs uniform in ±1 V. `profile` runs libngspice in this process (one sample at a time by
`op`, the old path, and many samples per `dc` sweep, the engine's path now); `scaling` and
`cluster` go through pipeline.hardware.signoff.run_ngspice, the code `mixsig signoff` runs, and time
the solves only (Ray start and each actor's netlist load are reported apart). The machine is
shared: every figure is printed with the load average (`uptime`) next to it, and `scaling`
interleaves 1 and 2 actors round by round so both see the same load.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import time

import numpy as np


def load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def block_and_inputs(n: int, seed: int = 0):
    from pipeline.commands.bench import fashion_block
    model = fashion_block()
    x = np.random.default_rng(seed).uniform(-1.0, 1.0, (n, 150))
    return model, x


# ---------------------------------------------------------------------------------------
# profile: one sample's time, old path (alter + op) and new path (dc sweep)
# ---------------------------------------------------------------------------------------
def profile(args) -> dict:
    from analog.netlist import NetlistPlan, _num
    from analog.ngspice.binding import Ngspice
    from analog.ngspice.options import DEFAULT_OPTIONS
    from analog.ngspice.pool import SWEEP_SOURCE, external_names, external_netlist, external_rows

    model, x = block_and_inputs(args.samples + 1)
    c, G = model.circuit, model.conductances
    src = c.source_voltages(x)
    plan = NetlistPlan(c, dict(DEFAULT_OPTIONS))
    names = [n.lower().encode() for n in plan.free_nodes] + [b.encode() for b in plan.source_branches]
    sp = Ngspice()
    out: dict = {"samples": args.samples, "load_before": load()}

    # old path: alter the sources that changed, op, read 422 vectors, destroy the plot
    t0 = time.perf_counter()
    sp.load(plan.text(G, src[0], None, analysis=False))
    out["netlist_load_s"] = time.perf_counter() - t0
    n_old = min(args.samples, args.op_samples)
    T = dict.fromkeys(("build_alter_commands", "alter", "op", "read_vectors", "destroy_plot"), 0.0)
    op_cpu = 0.0
    prev = src[0]
    for i in range(1, n_old + 1):
        t = time.perf_counter()
        cmds = [f"alter {plan.source_elems[k]} dc={_num(src[i][k])}" for k in np.flatnonzero(src[i] != prev)]
        T["build_alter_commands"] += time.perf_counter() - t
        t = time.perf_counter()
        sp.commands(cmds)
        T["alter"] += time.perf_counter() - t
        prev = src[i]
        t, tc = time.perf_counter(), time.process_time()
        sp.command("op")
        T["op"] += time.perf_counter() - t
        op_cpu += time.process_time() - tc
        t = time.perf_counter()
        prefix = sp.current_plot().encode() + b"."
        for nm in names:
            sp.vector(prefix + nm)
        T["read_vectors"] += time.perf_counter() - t
        t = time.perf_counter()
        sp.command("destroy all")
        T["destroy_plot"] += time.perf_counter() - t
    out["op_path_ms_per_sample"] = {k: 1e3 * v / n_old for k, v in T.items()}
    out["op_path_ms_per_sample"]["total"] = 1e3 * sum(T.values()) / n_old
    out["op_path_op_cpu_ms"] = 1e3 * op_cpu / n_old
    out["op_path_samples"] = n_old

    # new path: external sources, one dc sweep per chunk; cProfile separates the Python
    # callbacks (one per external source per Newton iteration) from ngspice's own work
    sp.load(external_netlist(plan, G))
    sp.set_external(external_names(plan))
    rows = external_rows(plan, src[1:], None)
    for n_pts in (1, args.samples):        # a 1-point sweep: the per-sweep set-up (matrix ordering)
        sp._rows(rows[:n_pts].tolist())
        sp.command("destroy all")
        t, tc = time.perf_counter(), time.process_time()
        sp.command(f"dc {SWEEP_SOURCE} 0 {n_pts - 1} 1")
        out[f"sweep_{n_pts}_s"] = time.perf_counter() - t
        out[f"sweep_{n_pts}_cpu_s"] = time.process_time() - tc
    sp.command("destroy all")
    prof = cProfile.Profile()
    t0, c0 = time.perf_counter(), time.process_time()
    prof.enable()
    values, ok, _, _ = sp.sweep(rows[: args.samples], names, SWEEP_SOURCE, max_points=args.samples)
    prof.disable()
    wall = time.perf_counter() - t0
    out["sweep_path_cpu_ms_per_sample"] = 1e3 * (time.process_time() - c0) / args.samples
    stats = pstats.Stats(prof)
    cb_time, cb_calls, read_time = 0.0, 0, 0.0
    for (file, _, func), (cc, nc, tt, ct, _) in stats.stats.items():
        if func in ("_get_vsrc_data", "_send_data"):
            cb_time += tt
            cb_calls += nc
        if func == "_read_plot":
            read_time += ct
    n = args.samples
    out["sweep_path_ms_per_sample"] = {"callbacks (Python, source values + next row)": 1e3 * cb_time / n,
                                       "read_vectors": 1e3 * read_time / n,
                                       "ngspice solve (dc sweep minus callbacks)": 1e3 * (wall - cb_time - read_time) / n,
                                       "total": 1e3 * wall / n}
    out["sweep_callbacks_per_sample"] = cb_calls / n
    out["sweep_setup_s"] = out["sweep_1_s"]
    out["sweep_per_point_ms"] = 1e3 * (out[f"sweep_{n}_s"] - out["sweep_1_s"]) / max(1, n - 1)
    out["sweep_per_point_cpu_ms"] = 1e3 * (out[f"sweep_{n}_cpu_s"] - out["sweep_1_cpu_s"]) / max(1, n - 1)
    out["speedup_sweep_vs_op_cpu"] = out["op_path_op_cpu_ms"] / out["sweep_path_cpu_ms_per_sample"]
    out["sweep_converged"] = int(ok.sum())
    nat = model.get_engine("native").solve(G, x[1: n + 1])
    out["sweep_max_abs_dv_vs_native"] = float(np.abs(values[ok] - np.concatenate(
        [nat.v, -nat.source_currents], axis=1)[ok])[:, : c.n_free].max())
    out["speedup_sweep_vs_op"] = out["op_path_ms_per_sample"]["total"] / out["sweep_path_ms_per_sample"]["total"]
    out["load_after"] = load()
    return out


# ---------------------------------------------------------------------------------------
# scaling: 1 vs 2 actors, interleaved; cluster: several raylets on this machine
# ---------------------------------------------------------------------------------------
def _one(model, x, actors: int, chunk: int, check: bool = False) -> dict:
    from pipeline.hardware import signoff as so
    before = load()
    res = so.run_ngspice(model.circuit, model.conductances, x, actors, chunk=chunk, progress=False)
    thr = so.throughput(res)
    extra = {}
    if check:
        ref = model.get_engine("native").solve(model.conductances, x)
        extra["max_abs_dv_vs_native"] = float(np.abs(res.v - ref.v).max())
    return {**extra, "actors": actors, "samples": len(x), "wall_s": res.wall_seconds, "samples_per_s": thr["samples_per_s"],
            "per_actor": [round(a["samples_per_s"], 2) for a in res.actors],
            "cpu_s_per_sample_ms": 1e3 * sum(a["cpu_seconds"] for a in res.actors) / len(x),
            "cpus_used": sum(a["cpu_seconds"] for a in res.actors) / res.wall_seconds,   # CPU the actors got
            "nodes": thr["nodes"], "load_s": [round(a["load_seconds"], 2) for a in res.actors],
            "nonconverged": int((~res.converged).sum()), "load_before": before, "load_after": load()}


def scaling(args) -> dict:
    import ray

    from pipeline.hardware import signoff as so
    model, x = block_and_inputs(args.samples)
    t0 = time.perf_counter()
    session = so.connect(None, 2)
    out: dict = {"ray_start_s": time.perf_counter() - t0, "cpus": ray.cluster_resources().get("CPU"), "rounds": []}
    try:
        for r in range(args.rounds):
            order = (1, 2) if r % 2 == 0 else (2, 1)
            rnd = {a: _one(model, x, a, args.chunk) for a in order}
            rnd["ratio_2_vs_1"] = rnd[2]["samples_per_s"] / rnd[1]["samples_per_s"]
            out["rounds"].append(rnd)
            print(json.dumps({"round": r, "ratio_2_vs_1": round(rnd["ratio_2_vs_1"], 3),
                              **{str(a): {k: rnd[a][k] for k in ("samples_per_s", "per_actor", "cpus_used",
                                                                 "cpu_s_per_sample_ms", "load_before")}
                                 for a in (1, 2)}}), flush=True)
    finally:
        session.close()
    ratios = [rnd["ratio_2_vs_1"] for rnd in out["rounds"]]
    out["ratio_2_vs_1_median"] = float(np.median(ratios))
    out["ratios"] = ratios
    return out


def cluster(args) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    from pipeline.hardware import signoff as so
    model, x = block_and_inputs(args.samples)
    t0 = time.perf_counter()
    cl = Cluster(initialize_head=True, head_node_args={                  # the head runs no actor
        "num_cpus": 0, "_system_config": {"worker_niceness": so.WORKER_NICENESS}})
    for _ in range(args.nodes):
        cl.add_node(num_cpus=1)
    session = so.connect(cl.address, args.nodes)
    out: dict = {"cluster_start_s": time.perf_counter() - t0, "address": cl.address,
                 "nodes_alive": sum(bool(n["Alive"]) for n in ray.nodes()), "cpus": ray.cluster_resources().get("CPU")}
    try:
        out["run"] = _one(model, x, args.nodes, args.chunk, check=True)
    finally:
        session.close()
        cl.shutdown()
    return out


def solo(args) -> dict:
    """One plain process (no Ray) solving `samples` on an in-process ngspice engine."""
    from analog.ngspice import NgspiceEngine
    model, x = block_and_inputs(args.samples, seed=args.seed)
    with NgspiceEngine(model.circuit, processes=0) as eng:
        eng.solve(model.conductances, x[:1])
        t0, c0 = time.perf_counter(), time.process_time()
        eng.solve(model.conductances, x)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    with open("/proc/self/autogroup") as fh:
        group = fh.read().split()[0]
    return {"pid": os.getpid(), "autogroup": group, "wall_s": wall, "cpu_s": cpu, "samples_per_s": len(x) / wall}


def sessions(args) -> dict:
    """The scheduler, not the code: one plain process, two in this session, two each in its
    own session (its own autogroup when kernel.sched_autogroup_enabled = 1), round by round."""
    import subprocess
    import sys

    def start(seed: int, own: bool):
        return subprocess.Popen([sys.executable, __file__, "solo", "--samples", str(args.samples), "--seed", str(seed)],
                                stdout=subprocess.PIPE, text=True, start_new_session=own)

    def rates(procs) -> list:
        return [round(json.loads(p.communicate()[0])["samples_per_s"], 2) for p in procs]

    try:
        with open("/proc/sys/kernel/sched_autogroup_enabled") as fh:
            autogroup = fh.read().strip()
    except OSError:
        autogroup = "unknown"
    out: dict = {"sched_autogroup_enabled": autogroup, "rounds": []}
    for _ in range(args.rounds):
        rnd = {"load": load(), "one": rates([start(1, False)]), "two_same_session": rates([start(1, False), start(2, False)]),
               "two_own_sessions": rates([start(1, True), start(2, True)])}
        print(json.dumps(rnd), flush=True)
        out["rounds"].append(rnd)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("profile", "scaling", "cluster", "sessions", "solo"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=int, default=None)
    ap.add_argument("--op-samples", type=int, default=20, help="profile: samples for the old op path")
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--nodes", type=int, default=2)
    args = ap.parse_args()
    args.samples = args.samples or {"profile": 128, "scaling": 512, "cluster": 256, "sessions": 96, "solo": 96}[args.what]
    res = {"profile": profile, "scaling": scaling, "cluster": cluster, "sessions": sessions, "solo": solo}[args.what](args)
    print(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main()
