"""One libngspice instance in this process, driven through PySpice's cffi binding.

We use PySpice only to load the shared library (`NgSpiceShared`); commands, netlist loading
and vector reading go through our own thin wrappers, because PySpice raises on any stderr
note ngspice prints and keeps every plot. libngspice is not thread-safe and holds global
state, so each worker process of `analog.ngspice.pool` owns exactly one `Ngspice`; the
parent process never loads the library (`ngspice_version` asks a subprocess).

Many samples in one analysis (`Ngspice.sweep`). Every `op` is a new analysis job, and ngspice
sets its sparse matrix up and reorders it from scratch for each job: on the Fashion-sized
block that is most of an `op`'s time. A `dc` sweep is one job: the matrix is ordered once and
every further point only refactors it, starting Newton from the previous point. So the input
and nudging sources of a loaded netlist are `external` (shared-library API: ngspice asks the
caller for their value, `GetVSRCData`/`GetISRCData`), a dummy source is swept over the sample
index, and ngspice's per-point data callback (`SendData`, called once per converged point)
moves the callbacks on to the next sample's row. A point the sweep cannot solve ends the
sweep; that sample is then solved alone by `op` (ngspice's full gmin/source stepping, exactly
the one-sample path), and the sweep resumes after it.
"""
from __future__ import annotations

import functools
import logging
import subprocess
import sys
import warnings

import numpy as np


class NgspiceError(RuntimeError):
    """ngspice rejected a netlist or a command (a bug, not a convergence failure)."""


def silence_pyspice() -> None:
    # "Unsupported Ngspice version 39" and ngspice's stderr notes are logged as errors by
    # PySpice; both are harmless here (we inspect ngspice's output ourselves).
    for name in ("PySpice", "PySpice.Spice.NgSpice.Shared", "PySpice.Spice.NgSpice.Shared.NgSpiceShared"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    warnings.filterwarnings("ignore", message=".*Unsupported Ngspice version.*")


class Ngspice:
    """libngspice with our own command wrapper (errors from ngspice's output) and vector reader."""

    #: free ngspice's command history every so many commands (it keeps every command)
    RELEASE_EVERY = 2000

    def __init__(self):
        silence_pyspice()
        from PySpice.Spice.NgSpice.Shared import ffi

        self.shared = _shared_class().new_instance(send_data=True)
        self.lib = self.shared._ngspice_shared
        self.ffi = ffi
        self.n_commands = 0
        self.loaded = False

    def command(self, cmd: str) -> tuple[list[str], list[str]]:
        """Run one ngspice command; return what it printed on stdout and stderr."""
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
        """Load a netlist (replacing any loaded one); raise NgspiceError if ngspice complains."""
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
        """A copy of a vector of a plot ("op1.v(n3)"), or None if it is missing or empty."""
        info = self.lib.ngGet_Vec_Info(name)
        if info == self.ffi.NULL or info.v_length < 1 or info.v_realdata == self.ffi.NULL:
            return None
        return np.frombuffer(self.ffi.buffer(info.v_realdata, info.v_length * 8), dtype=np.float64).copy()

    def current_plot(self) -> str:
        return self.ffi.string(self.lib.ngSpice_CurPlot()).decode()

    def operating_point(self, names: list[bytes]) -> tuple[np.ndarray | None, str]:
        """Run `op` on the loaded circuit; return the values of the named vectors, or None
        and ngspice's complaint when it did not converge. When `op` fails after ngspice's
        own gmin and source stepping, ngspice prints "... simulation(s) aborted" and leaves
        a plot with empty vectors. Every plot is destroyed before the next `op`, so a value
        can never come from an older plot, and memory stays flat."""
        self.command("destroy all")
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


    # many samples in one analysis -------------------------------------------------------------
    def set_external(self, names) -> None:
        """The lowercase element names of the `external` sources, in the column order of the
        rows `sweep` and `operating_point` take their values from."""
        self.shared.ext_index = {n.lower().encode(): k for k, n in enumerate(names)}

    def _rows(self, rows) -> None:
        self.shared.ext_rows = rows
        self.shared.ext_k = 0
        self.shared.ext_row = rows[0]

    def sweep(self, rows: np.ndarray, names: list[bytes], sweep_source: str = "vsweep",
              max_points: int = 256, order: bool = True) -> tuple[np.ndarray, np.ndarray, dict, dict]:
        """Operating points of many samples on the loaded circuit: row i of `rows` holds the
        values of the external sources (`set_external`) for sample i. Returns (values (n,
        len(names)) with NaN rows where a sample did not converge, ok (n,), messages {i: why},
        stats {"sweeps", "op_fallbacks", "loads"}). See the module docstring for how.

        order: visit the samples of each sweep in nearest-neighbour order (`visit_order`), so
        that Newton starts from a similar sample's solution (results are returned in the
        given order)."""
        rows = np.asarray(rows, dtype=float)
        if order and len(rows) > 2:
            perm = np.concatenate([lo + visit_order(rows[lo: lo + max_points]) for lo in range(0, len(rows), max_points)])
            values, ok, messages, stats = self.sweep(rows[perm], names, sweep_source, max_points, order=False)
            back = np.empty_like(perm)
            back[perm] = np.arange(len(perm))
            return values[back], ok[back], {int(perm[i]): m for i, m in messages.items()}, stats
        n = len(rows)
        values = np.full((n, len(names)), np.nan)
        ok = np.zeros(n, bool)
        messages: dict[int, str] = {}
        stats = {"sweeps": 0, "op_fallbacks": 0}
        calls0 = self.shared.ext_calls
        lo = 0
        while lo < n:
            hi = min(n, lo + max_points)
            self._rows(rows[lo:hi].tolist())
            self.command("destroy all")
            out, err = self.command(f"dc {sweep_source} 0 {hi - lo - 1} 1")
            stats["sweeps"] += 1
            plot = self.current_plot()
            done = 0
            if plot.startswith("dc"):
                done, got = self._read_plot(plot, names, hi - lo)
                values[lo: lo + done] = got
            self.command("destroy all")
            good = np.all(np.isfinite(values[lo: lo + done]), axis=1)
            ok[lo: lo + done] = good
            for j in np.flatnonzero(~good):
                values[lo + j] = np.nan
                messages[lo + j] = "non-finite values in the operating point"
            lo += done
            if lo < hi:         # the sweep stopped at sample lo: solve it alone, then go on after it
                self._rows(rows[lo: lo + 1].tolist())
                vals, why = self.operating_point(names)
                stats["op_fallbacks"] += 1
                if vals is None:
                    messages[lo] = why
                else:
                    values[lo], ok[lo] = vals, True
                lo += 1
        # circuit loads (≈ Newton iterations) per sample: machine-independent cost measure
        stats["loads"] = (self.shared.ext_calls - calls0) / max(1, len(self.shared.ext_index))
        return values, ok, messages, stats

    def _read_plot(self, plot: str, names: list[bytes], n: int) -> tuple[int, np.ndarray]:
        """(points the plot holds, their values (points, len(names))) of a dc sweep plot."""
        prefix = plot.encode() + b"."
        cols = []
        for name in names:
            info = self.lib.ngGet_Vec_Info(prefix + name)
            if info == self.ffi.NULL or info.v_realdata == self.ffi.NULL:
                return 0, np.empty((0, len(names)))
            cols.append(np.frombuffer(self.ffi.buffer(info.v_realdata, info.v_length * 8), dtype=np.float64))
        done = min(n, min(len(c) for c in cols))
        return done, np.stack([c[:done] for c in cols], axis=1)


def visit_order(rows: np.ndarray) -> np.ndarray:
    """A greedy nearest-neighbour tour of the rows (Euclidean, from row 0): each next sample
    is the closest one not yet visited. A dc sweep starts each point's Newton iteration from
    the previous point (extrapolated from the two before it), so similar neighbours converge
    sooner: on a trained Fashion block with real test embeddings, 7.7 circuit loads per
    sample instead of 10.1 in the given order (−24 %); O(n²) per sweep of ≤ 256 samples."""
    n = len(rows)
    if n <= 2:
        return np.arange(n)
    with np.errstate(all="ignore"):             # absurd inputs (1e300 V) overflow: distance inf
        sq = np.einsum("ij,ij->i", rows, rows)
        dist = np.nan_to_num(sq[:, None] + sq[None, :] - 2.0 * rows @ rows.T, nan=np.inf, posinf=np.inf)
    seen = np.zeros(n, bool)
    out = np.empty(n, int)
    cur = 0
    for k in range(n):
        out[k] = cur
        seen[cur] = True
        if k + 1 < n:
            left = np.flatnonzero(~seen)
            cur = int(left[np.argmin(dist[cur, left])])
    return out


@functools.lru_cache(maxsize=1)
def _shared_class():
    """PySpice's NgSpiceShared with lean callbacks for `external` sources (the value from the
    current row) and for each converged point (move to the next row). Built lazily: PySpice
    is imported only in processes that load libngspice."""
    from PySpice.Spice.NgSpice.Shared import NgSpiceShared, ffi

    class _Shared(NgSpiceShared):
        _instances: dict = {}
        ext_index: dict = {}
        ext_rows: list = [[]]
        ext_row: list = []
        ext_k = 0
        ext_calls = 0          # source values served: (external sources) × (circuit loads)

        @staticmethod
        def _get_vsrc_data(value, time, name, ngspice_id, user_data):
            self = ffi.from_handle(user_data)
            self.ext_calls += 1
            value[0] = self.ext_row[self.ext_index[ffi.string(name)]]
            return 0

        _get_isrc_data = _get_vsrc_data

        @staticmethod
        def _send_data(data, number_of_vectors, ngspice_id, user_data):
            self = ffi.from_handle(user_data)
            self.ext_k += 1
            if self.ext_k < len(self.ext_rows):
                self.ext_row = self.ext_rows[self.ext_k]
            return 0

    return _Shared


def _version_from(text: str) -> str | None:
    for line in text.splitlines():
        if "ngspice-" in line:
            return "ngspice-" + line.split("ngspice-")[1].split()[0].strip(" *,")
    return None


@functools.lru_cache(maxsize=1)
def ngspice_version() -> str:
    """ngspice's version string (e.g. 'ngspice-39'), read from the shared library in a
    subprocess so that this process never loads libngspice itself."""
    code = ("import logging; logging.disable(logging.CRITICAL)\n"
            "from PySpice.Spice.NgSpice.Shared import NgSpiceShared\n"
            "ng = NgSpiceShared.new_instance()\n"
            "out = ng._ngspice_shared.ngSpice_Command(b'version -s')\n"
            "print('\\n'.join(ng._stdout))")
    for cmd in ([sys.executable, "-c", code], ["ngspice", "-v"]):
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            continue
        found = _version_from(res.stdout)
        if found:
            return found
    return "unknown"
