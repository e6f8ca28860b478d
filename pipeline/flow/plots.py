"""PNG plots for the runs: learning curves, histograms (conductances, hidden voltages,
input shifts), accuracy per round, and accuracy per round across runs (`mixsig compare`).
matplotlib is used headless (Agg) and imported lazily."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def learning_curves(history: dict, path, title: str = "learning curves", epochs=None) -> Path:
    """Loss and accuracy per epoch (training and validation) from a history dict of lists."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    n = max((len(v) for v in history.values()), default=0)
    x = np.asarray(epochs if epochs is not None else np.arange(1, n + 1))
    for ax, keys, label in ((axes[0], ("loss", "val_loss"), "loss"), (axes[1], ("accuracy", "val_accuracy"), "accuracy"),
                            (axes[2], ("power_mean",), "mean power (W)")):
        for k in keys:
            if k in history and len(history[k]):
                ax.plot(x[: len(history[k])], history[k], marker="o", ms=3, label=k)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def histograms(hists: dict, path, title: str = "histograms") -> Path:
    """One panel per (counts, edges) histogram, e.g. 'hidden_voltage', 'conductance/dense1'."""
    plt = _plt()
    names = list(hists)
    cols = max(1, min(3, len(names)))
    rows = max(1, int(np.ceil(len(names) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(4.3 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), names):
        counts, edges = hists[name]
        ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="tab:blue", alpha=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("V" if "voltage" in name else ("S" if "conductance" in name else ""))
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 3))
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    fig.suptitle(title)
    return _save(fig, path)


def value_histograms(values: dict, path, title: str = "", bins: int = 50) -> Path:
    """Histograms of raw arrays, one panel each ({name: array})."""
    return histograms({k: np.histogram(np.asarray(v)[np.isfinite(v)], bins=bins) for k, v in values.items()},
                      path, title)


def accuracy_per_round(series: dict, path, title: str = "accuracy per round") -> Path:
    """{label: [(round, accuracy), ...]} → one line per label."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, points in series.items():
        if not points:
            continue
        pts = sorted(points)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.set_title(title)
    if ax.lines:
        ax.legend(fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
    return _save(fig, path)


def round_gains(rounds, accuracy, path, title: str = "end-to-end accuracy per round") -> Path:
    """End-to-end test accuracy after each round (line) and each round's gain over the one
    before (bars, right axis, in percentage points)."""
    plt = _plt()
    r, a = np.asarray(rounds, int), np.asarray(accuracy, float)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(r, a, marker="o", color="tab:blue", label="end to end")
    ax.set_xlabel("round")
    ax.set_ylabel("end-to-end test accuracy")
    ax.grid(alpha=0.3)
    ax.xaxis.get_major_locator().set_params(integer=True)
    if len(r) > 1:
        ax2 = ax.twinx()
        gains = 100 * np.diff(a)
        ax2.bar(r[1:], gains, width=0.4, alpha=0.35, color=np.where(gains >= 0, "tab:green", "tab:red"))
        ax2.axhline(0, color="grey", lw=0.8)
        ax2.set_ylabel("gain over the previous round (pp)")
    ax.set_title(title)
    return _save(fig, path)


def programming_histograms(target, realised, g_max: float, path, title: str = "programming") -> Path:
    """Target (trained, in device units) and realised conductances overlaid, and the
    programming error ΔG/g_max (all devices of all chips given)."""
    plt = _plt()
    target, realised = np.asarray(target, float), np.asarray(realised, float)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    bins = np.linspace(min(target.min(), realised.min()), max(target.max(), realised.max()), 60)
    axes[0].hist(target, bins=bins, alpha=0.6, label="target")
    axes[0].hist(realised, bins=bins, alpha=0.6, label="realised")
    axes[0].set_xlabel("conductance (S)")
    axes[0].ticklabel_format(axis="x", style="sci", scilimits=(-3, 3))
    axes[0].legend(fontsize=8)
    axes[1].hist((realised - target) / g_max, bins=60, color="tab:red", alpha=0.8)
    axes[1].set_xlabel("ΔG / g_max (realised − target)")
    for ax in axes:
        ax.set_ylabel("devices")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return _save(fig, path)


def accuracy_vs_time(series: dict, path, title: str = "accuracy after programming") -> Path:
    """{label: (times_s, mean, spread)} → one line per scenario (shaded ± spread across chips)
    against the time after programming, on a log axis (symlog: t = 0 is shown, linear below 1 s)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, (times, mean, std) in series.items():
        t, m = np.asarray(times, float), np.asarray(mean, float)
        s = np.zeros_like(m) if std is None else np.asarray(std, float)
        line, = ax.plot(t, m, marker="o", label=label)
        if np.any(s > 0):
            ax.fill_between(t, m - s, m + s, color=line.get_color(), alpha=0.2)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("time after programming (s)")
    ax.set_ylabel("end-to-end test accuracy")
    ax.grid(alpha=0.3, which="both")
    ax.set_title(title)
    if ax.lines:
        ax.legend(fontsize=8)
    return _save(fig, path)


def split_energy(table: list[dict], e_analog: float, head_macs: int, path) -> Path:
    """End-to-end accuracy against energy per image (log axis), one panel per MAC arithmetic:
    each front end behind the analog block, behind a digital head (an arrow from it), and alone."""
    plt = _plt()
    kinds = list(dict.fromkeys(r["arithmetic"] for r in table))
    fig, axes = plt.subplots(1, len(kinds), figsize=(12, 4.4), sharey=True, squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        rs = [r for r in table if r["arithmetic"] == kind]
        for r in rs:
            start = r["acc_digital_head"] if r["acc_digital_head"] is not None else r["acc_digital_only"]
            ax.annotate("", xy=(r["analog_j"] * 1e9, r["acc_analog"]), xytext=(r["digital_head_j"] * 1e9, start),
                        arrowprops=dict(arrowstyle="->", color="0.6", lw=0.8))
            ax.annotate(r["front_end"], (r["analog_j"] * 1e9, r["acc_analog"]), fontsize=7,
                        xytext=(4, -10), textcoords="offset points")
        ax.scatter([r["analog_j"] * 1e9 for r in rs], [r["acc_analog"] for r in rs], marker="o", zorder=3,
                   label=f"front end + analog block with converters ({e_analog * 1e12:.0f} pJ), best end to end")
        dh = [r for r in rs if r["acc_digital_head"] is not None]
        ax.scatter([r["digital_head_j"] * 1e9 for r in dh], [r["acc_digital_head"] for r in dh], marker="s",
                   zorder=3, label=f"front end + digital head ({head_macs} MACs), backprop baseline")
        ax.scatter([r["front_j"] * 1e9 for r in rs], [r["acc_digital_only"] for r in rs], marker="x", zorder=3,
                   label="digital only (the encoder's own head)")
        ax.set_xscale("log")
        e_mac = rs[0]["front_j"] / rs[0]["macs"] if rs and rs[0]["macs"] else float("nan")
        ax.set_xlabel(f"energy per image (nJ), {kind} MACs at {e_mac * 1e12:.2f} pJ (Horowitz 2014)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][0].legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def phase_durations(study: dict, train_durations, path) -> Path:
    """`mixsig phases`: the cosine to the exact gradient against the phase durations (both
    cut, free cut, nudged cut; initial and trained conductances), and the test accuracy after
    training with both phases cut at t (read at the operating point and at t)."""
    plt = _plt()
    ps = np.array(study["durations"]) * 1e12
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for (state, (grid, _)), color in zip(study["grids"].items(), ("C0", "C3")):
        a.semilogx(ps, np.diag(grid), "o-", color=color, label=f"both phases cut at t ({state})")
        a.semilogx(ps, grid[:, -1], "s--", color=color, label=f"free phase cut at t, nudged {ps[-1]:.0f} ps")
        a.semilogx(ps, grid[-1, :], "^:", color=color, label=f"nudged phases cut at t, free {ps[-1]:.0f} ps")
    a.axhline(1.0, color="k", lw=0.8)
    a.set_xlabel("phase duration t (ps)")
    a.set_ylabel("cosine to the exact gradient")
    a.legend(fontsize=7)
    both = {tf: r for tf, tn, *r in study["trained"] if tf == tn and tf in set(train_durations)}
    tp = sorted(both)
    b.semilogx(np.array(tp) * 1e12, [both[t][0] for t in tp], "o-", label="read at the operating point")
    b.semilogx(np.array(tp) * 1e12, [both[t][1] for t in tp], "s--", label="read at t")
    b.axhline(study["ep_accuracy"], color="k", lw=0.8, label=f"EP at the operating points ({study['ep_accuracy']:.3f})")
    b.set_xlabel("phase duration t, both phases (ps)")
    b.set_ylabel("test accuracy")
    b.legend(fontsize=8)
    return _save(fig, path)
