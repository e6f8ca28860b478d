"""The sensitivity map of a trained analog block: its test accuracy (mean ± spread over chip
seeds) against the strength of each non-ideality alone, on a grid the user can set, until it
breaks; and ngspice spot checks of the chips at the breaking points.

Each axis changes one thing of the `ideal` device preset (analog.hardware, docs/devices.md),
in the device range [g_min, g_max] of the ideal preset (the block's conductances are scaled
onto it, as in every chip); its grid runs from mild to harsh:

  prog_sigma    programming error, constant σ as a fraction of g_max
  levels        programmable levels (fewer is harsher)
  on_off        on/off ratio g_max/g_min (smaller is harsher)
  stuck         share of stuck devices, half at g_min and half at g_max
  drift_time    seconds after programming, PCM drift (ν per device), no compensation
  read_noise    read noise, relative σ per read
  is_sigma      diode saturation-current spread (log-normal σ; junction diodes)
  vto_sigma     diode threshold spread in volts (MOS or behavioural diodes)
  gain_sigma    amplifier gain spread (relative)
  offset_sigma  amplifier output offset in volts
  dac_bits      input DAC resolution, full scale ±1 V (fewer bits is harsher)
  adc_bits      output ADC resolution, full scale calibrated on the map's samples
  adc_range     output ADC full scale in volts at 8 bits (smaller clips more)
  r_segment     crossbar wire resistance per cell segment, Ω (IR drop)

The breaking point of an axis is the mildest value whose mean accuracy is more than
`threshold` below the ideal block's; an axis that has not broken at the end of its grid is
continued geometrically (`extend`), a few values at most, so the map reaches where it breaks.
"""
from __future__ import annotations

from pipeline.errors import OptionError

import time
from dataclasses import dataclass, field

import numpy as np

# axis → (default grid from mild to harsh, unit, log axis in the plot, what it is)
AXES: dict[str, tuple[tuple, str, bool, str]] = {
    "prog_sigma": ((0.01, 0.03, 0.1, 0.2, 0.4), "σ/g_max", True, "programming error (constant σ)"),
    "levels": ((64, 16, 8, 4, 3, 2), "levels", True, "programmable levels"),
    "on_off": ((100.0, 30.0, 10.0, 5.0, 2.0), "g_max/g_min", True, "on/off ratio"),
    "stuck": ((0.01, 0.03, 0.1, 0.2, 0.4), "share", True, "stuck devices (half low, half high)"),
    "drift_time": ((3600.0, 86400.0, 3.15e7, 3.15e9), "s", True, "PCM drift, uncompensated"),
    "read_noise": ((0.01, 0.03, 0.1, 0.3, 0.6), "σ/G", True, "read noise (relative)"),
    "is_sigma": ((0.1, 0.3, 1.0, 2.0, 4.0), "σ of ln IS", True, "diode IS spread"),
    "vto_sigma": ((0.01, 0.03, 0.1, 0.2), "V", True, "diode threshold spread"),
    "gain_sigma": ((0.01, 0.03, 0.1, 0.2, 0.3), "σ/A", True, "amplifier gain spread"),
    "offset_sigma": ((0.001, 0.01, 0.03, 0.1, 0.3), "V", True, "amplifier offset"),
    "dac_bits": ((10, 8, 6, 4, 3, 2), "bits", False, "input DAC bits (±1 V)"),
    "adc_bits": ((10, 8, 6, 4, 3, 2), "bits", False, "output ADC bits (calibrated range)"),
    "adc_range": ((2.0, 1.0, 0.5, 0.2, 0.1, 0.05), "V", True, "output ADC full scale (8 bits)"),
    "r_segment": ((0.5, 2.5, 10.0, 30.0, 100.0), "Ω", True, "wire resistance per cell segment"),
}
_INTEGER_AXES = ("levels", "dac_bits", "adc_bits")
_BITS_AXES = ("dac_bits", "adc_bits")
#: full scale of the input DAC on the map (the analog block's default input amplitude, V)
DAC_RANGE = 1.0
DRIFT_HORIZON = 3.2e9     # s, about a century: drift_time is not continued past it


def parse_grid(items, axes=None) -> dict[str, tuple]:
    """`--grid AXIS=v1,v2,...` items and an optional axis selection → {axis: values}. Every
    error names the axis, before any work (ValueError)."""
    chosen = list(axes) if axes else list(AXES)
    for a in chosen:
        if a not in AXES:
            raise OptionError(f"robustness axis {a!r} is unknown; axes: {', '.join(AXES)}")
    grid = {a: AXES[a][0] for a in chosen}
    for item in items or ():
        name, sep, text = str(item).partition("=")
        name = name.strip()
        if not sep or name not in AXES:
            raise OptionError(f"--grid {item!r}: expected AXIS=v1,v2,... with AXIS one of {', '.join(AXES)}")
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts:
            raise OptionError(f"--grid {name}: the grid has no values (give e.g. {name}="
                             f"{','.join(str(v) for v in AXES[name][0][:3])})")
        try:
            values = tuple(int(p) if name in _INTEGER_AXES else float(p) for p in parts)
        except ValueError:
            kind = "integers" if name in _INTEGER_AXES else "numbers"
            raise OptionError(f"--grid {name}={text}: values must be {kind}") from None
        for v in values:
            check_value(name, v)
        grid[name] = values
        if name not in chosen:
            chosen.append(name)
    return {a: grid[a] for a in chosen}


def check_value(axis: str, v) -> None:
    ok = {"levels": v >= 2, "on_off": v > 1, "stuck": 0 <= v <= 1, "adc_range": v > 0,
          "dac_bits": 1 <= v <= 24, "adc_bits": 1 <= v <= 24}.get(axis, v >= 0)
    if not (np.isfinite(v) and ok):
        why = {"levels": ">= 2", "on_off": "> 1", "stuck": "in [0, 1]", "adc_range": "> 0",
               "dac_bits": "from 1 to 24", "adc_bits": "from 1 to 24"}.get(axis, ">= 0")
        raise OptionError(f"--grid {axis}: value {v!r} must be {why}")


def spec_for(axis: str, value):
    """(HardwareSpec, read time) of one point of the map: the ideal preset with this one
    non-ideality at this strength."""
    from analog.hardware import PRESETS, resolve_hardware
    g_max = PRESETS["ideal"]["device"].get("g_max", 2e-5)
    dev, var, t, edges = {}, {}, 0.0, {}
    if axis == "prog_sigma":
        dev = {"prog_noise": "constant", "prog_sigma": float(value) * g_max}
    elif axis == "levels":
        dev = {"levels": int(value)}
    elif axis == "on_off":
        dev = {"g_max": g_max, "g_min": g_max / float(value)}
    elif axis == "stuck":
        dev = {"stuck_g_min": float(value) / 2, "stuck_g_max": float(value) / 2}
    elif axis == "drift_time":
        dev, t = {"drift": "pcm"}, float(value)
    elif axis == "read_noise":
        dev = {"read_noise": "relative", "read_sigma": float(value)}
    elif axis in ("is_sigma", "vto_sigma", "gain_sigma", "offset_sigma"):
        var = {axis: float(value)}
    elif axis == "dac_bits":
        edges = {"dac": {"bits": int(value), "range": DAC_RANGE}}
    elif axis == "adc_bits":
        edges = {"adc": {"bits": int(value), "calibrate": True}}
    elif axis == "adc_range":
        edges = {"adc": {"bits": 8, "range": float(value)}}
    elif axis == "r_segment":
        edges = {"wires": {"r_segment": float(value)}}
    else:
        raise OptionError(f"robustness axis {axis!r} is unknown; axes: {', '.join(AXES)}")
    return resolve_hardware("ideal", {"device": dev, "variation": var, "drift_compensation": False, **edges}), t


def applies(axis: str, model) -> bool:
    """Whether the axis changes anything in this block (diode spreads act on one kind each)."""
    if axis not in ("is_sigma", "vto_sigma"):
        return True
    from analog.hardware.programming import device_parameter
    kinds = {device_parameter(blk.device) for blk in model.circuit.nonlinear}
    return ("IS" in kinds) if axis == "is_sigma" else bool(kinds & {"VTO", "threshold"})


@dataclass
class AxisResult:
    axis: str
    values: list
    mean: list = field(default_factory=list)
    std: list = field(default_factory=list)
    accs: list = field(default_factory=list)        # per value: accuracy per seed
    breaking: float | None = None
    error: str | None = None                          # e.g. a spread that leaves no energy function


def extend(axis: str, values) -> object | None:
    """The next, harsher value after a grid (geometric continuation of its last step), or None
    when the axis cannot get harsher (2 levels, on/off ratio near 1, all devices stuck)."""
    v = list(values)
    if axis in _BITS_AXES:
        return int(v[-1]) - 1 if int(v[-1]) > 1 else None
    if axis == "adc_range":
        nxt = float(f"{v[-1] / 2:.3g}")
        return nxt if nxt >= 1e-4 else None
    if axis == "levels":
        return max(2, int(v[-1]) // 2) if int(v[-1]) > 2 else None
    if axis == "on_off":
        nxt = v[-1] / (v[-2] / v[-1] if len(v) > 1 and v[-2] > v[-1] else 2.0)
        return nxt if nxt > 1.05 else None
    ratio = v[-1] / v[-2] if len(v) > 1 and v[-2] > 0 and v[-1] > v[-2] else 2.0
    nxt = float(f"{v[-1] * ratio:.3g}") if v[-1] > 0 else 0.01
    if axis == "stuck":
        return min(1.0, nxt) if v[-1] < 1.0 else None
    if axis == "drift_time":           # beyond a century a drift time means nothing for a chip
        return nxt if nxt <= DRIFT_HORIZON else None
    return nxt


def sweep(model, x, y, grid: dict, seeds: int = 3, threshold: float = 0.02, progress=None,
          more: int = 0) -> tuple[float, list]:
    """(ideal accuracy, [AxisResult]) of the block on (x, y) over the grid, `seeds` chips per
    point (seeds 0..seeds-1), native engine at full batch speed. An axis that has not broken
    at the end of its grid is continued by up to `more` harsher values (`extend`)."""
    from analog.hardware import program

    from pipeline.hardware.chip_metrics import spread
    ideal = model.scores(x, y)["accuracy"]
    out = []
    for axis, values in grid.items():
        res = AxisResult(axis, [])
        todo, added = list(values), 0
        while todo:
            v = todo.pop(0)
            t0 = time.perf_counter()
            try:
                spec, t = spec_for(axis, v)
                accs = []
                for s in range(seeds):
                    chip = program(model, spec, s)
                    chip.calibrate_adc(x, t)          # adc_bits: full scale from the map's samples
                    accs.append(chip.accuracy(x, y, t))
                    chip.close()
            except ValueError as exc:        # e.g. a drawn gain <= 0: the map stops there
                res.error = f"{axis}={v:g}: {exc}"
                break
            res.values.append(v)
            res.accs.append(accs)
            res.mean.append(float(np.mean(accs)))
            res.std.append(spread(accs))
            if res.breaking is None and res.mean[-1] < ideal - threshold:
                res.breaking = v
            if progress:
                progress(f"{axis}={v:g}: {res.mean[-1]:.4f} ± {res.std[-1]:.4f} ({time.perf_counter() - t0:.1f} s)")
            if not todo and res.breaking is None and added < more:
                nxt = extend(axis, res.values)
                if nxt is not None:
                    todo.append(nxt)
                    added += 1
        out.append(res)
    return ideal, out


def spot_check(model, axis: str, value, x, y, seed: int = 0, processes: int | None = None) -> dict:
    """Chip `seed` at (axis, value) solved by the native engine and by ngspice on the same
    read of its conductances: largest |Δ output| (V) and each engine's accuracy on (x, y)."""
    from analog.hardware import program
    spec, t = spec_for(axis, value)
    chip = program(model, spec, seed)
    try:
        chip.calibrate_adc(x, t)
        G = chip.conductances_at(t, rng=np.random.default_rng(seed))
        nat = chip.solve(x, t, engine="native", G_list=G)
        opts = {"processes": processes} if processes else {}
        spi = chip.solve(x, t, engine="ngspice", G_list=G, **opts)
    finally:
        chip.close()
    yn, ys = chip.circuit.outputs(nat.v), chip.circuit.outputs(spi.v)
    raw = getattr(chip.circuit, "raw_outputs", chip.circuit.outputs)      # the engines, before any ADC
    ok = np.asarray(nat.converged, bool) & np.asarray(spi.converged, bool)
    return {"axis": axis, "value": value, "samples": int(len(y)),
            "max_abs_dy": float(np.max(np.abs(raw(nat.v)[ok] - raw(spi.v)[ok]))) if ok.any() else float("nan"),
            "acc_native": float(np.mean(yn.argmax(1) == y)), "acc_ngspice": float(np.mean(ys.argmax(1) == y)),
            "both_converged": int(ok.sum())}


def spot_value(result) -> object | None:
    """Where an axis is spot-checked on ngspice: its breaking point; the wire axis also at its
    harshest value when it did not break (so the spot checks always include wires)."""
    if result.breaking is not None:
        return result.breaking
    return result.values[-1] if result.axis == "r_segment" and result.values else None


def table(ideal: float, results: list) -> list[list[str]]:
    """Rows: axis, value, mean, spread, drop from ideal (pp), breaking mark."""
    rows = [["axis", "value", "unit", "accuracy", "spread", "drop (pp)", ""]]
    for r in results:
        for v, m, s in zip(r.values, r.mean, r.std):
            rows.append([r.axis, f"{v:g}", AXES[r.axis][1], f"{m:.4f}", f"{s:.4f}", f"{100 * (ideal - m):+.2f}",
                         "breaks" if r.breaking is not None and v == r.breaking else ""])
        if r.error:
            why = r.error.split(": ", 1)[-1]
            rows.append([r.axis, "-", "", "-", "-", "-", f"stopped: {why[:70]}{'...' if len(why) > 70 else ''}"])
    return rows


def plot(ideal: float, results: list, path, title: str = "robustness map"):
    """One panel per axis: accuracy (mean ± spread over seeds) against the strength."""
    from pipeline.flow.plots import _plt, _save
    plt = _plt()
    shown = [r for r in results if r.mean]
    cols = max(1, min(4, len(shown)))
    rows = max(1, int(np.ceil(len(shown) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False)
    for ax, r in zip(axes.ravel(), shown):
        v, m, s = np.asarray(r.values, float), np.asarray(r.mean), np.asarray(r.std)
        ax.plot(v, m, marker="o")
        ax.fill_between(v, m - s, m + s, alpha=0.25)
        ax.axhline(ideal, color="grey", ls="--", lw=1)
        if r.breaking is not None:
            ax.axvline(float(r.breaking), color="tab:red", lw=1)
        if AXES[r.axis][2]:
            ax.set_xscale("log", base=2 if r.axis == "levels" else 10)
            if r.axis == "levels":
                from matplotlib.ticker import NullFormatter, ScalarFormatter
                ax.xaxis.set_major_formatter(ScalarFormatter())
                ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"{r.axis} ({AXES[r.axis][1]})")
        ax.set_title(AXES[r.axis][3], fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(shown):]:
        ax.axis("off")
    axes[0][0].set_ylabel("test accuracy")
    fig.suptitle(title)
    return _save(fig, path)
