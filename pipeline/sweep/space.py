"""The sweep space file: which config keys vary, how they are searched, and how trials stop.

    # experiments/spaces/iris_lr.yaml
    searcher: random          # grid | random | optuna (adaptive: Tree-structured Parzen Estimator)
    samples: 8                # trials drawn (random, optuna); grid: repeats of the whole grid
    metric: val_accuracy      # what the searcher and the early stopping maximise / minimise
    mode: max
    scheduler: {type: asha, grace_period: 2, reduction_factor: 2}   # asha | median | none
    stages: [train-analog, evaluate]      # or cotrain (default for image data)
    seeds: [0, 1]             # seeds as a dimension: every point is run with each seed
    space:
      training.optimizer.lr: {loguniform: [1.0e-3, 1.0e-1]}
      analog.hidden: {choice: [[8], [16]]}
      analog.gain: [2.0, 4.0]           # a plain list is a grid
      training.beta: {uniform: [1.0e-7, 1.0e-6]}
      training.batch_size: {randint: [4, 16]}

Every key of `space` is a dotted config key; each value the space can take is applied to
the base config and validated by the config schema before any trial starts (pipeline.config),
so a misspelt key or an out-of-range bound is a one-line error naming it.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipeline.config import ConfigError, apply_overrides, validate_config

SEARCHERS = ("grid", "random", "optuna")
SCHEDULERS = ("asha", "median", "none")
DISTRIBUTIONS = ("grid", "choice", "uniform", "loguniform", "randint")
TOP_KEYS = ("searcher", "samples", "metric", "mode", "scheduler", "stages", "seeds", "space", "pareto")
# metrics every epoch of the analog block reports (analog.AnalogModel.fit logs); the others
# (test accuracies, end to end, ...) only exist when a trial ends, so they cannot stop one early
EPOCH_METRICS = ("val_accuracy", "val_loss", "accuracy", "loss")
GRID_LIMIT = 2000   # grid points whose joint config is validated up front (beyond: each value alone)


SpaceError = ConfigError    # a space file that cannot be used: one line `error: ...`, exit 2

@dataclass
class Dimension:
    key: str                  # dotted config key
    kind: str                 # one of DISTRIBUTIONS
    values: list              # grid/choice: the values; uniform/loguniform/randint: [low, high]

    def tune(self):
        """The Ray Tune search-space object of this dimension."""
        from ray import tune
        if self.kind == "grid":
            return tune.grid_search(self.values)
        if self.kind == "choice":
            return tune.choice(self.values)
        if self.kind == "uniform":
            return tune.uniform(*self.values)
        if self.kind == "loguniform":
            return tune.loguniform(*self.values)
        return tune.randint(self.values[0], self.values[1] + 1)   # randint: both ends included here

    def probes(self) -> list:
        """Values to validate before any trial: every listed value, or both ends of a range."""
        return list(self.values)

    def describe(self) -> str:
        return f"{self.kind} {json.dumps(self.values)}"


@dataclass
class SweepSpace:
    path: str
    dimensions: list[Dimension]
    searcher: str = "grid"
    samples: int = 1
    metric: str = "val_accuracy"
    mode: str = "max"
    scheduler: dict = field(default_factory=lambda: {"type": "none"})
    stages: list | str | None = None       # None: cotrain for images, [train-analog, evaluate] for tabular
    seeds: list | None = None
    raw: dict = field(default_factory=dict)
    pareto: dict | None = None             # {x: metric, y: metric, x_mode: min, y_mode: max}

    @property
    def keys(self) -> list[str]:
        return [d.key for d in self.dimensions]

    def grid_size(self) -> int:
        n = 1
        for d in self.dimensions:
            if d.kind == "grid":
                n *= len(d.values)
        return n * (len(self.seeds) if self.seeds and self.searcher != "optuna" else 1)

    def trial_count(self) -> int:
        """How many trials the sweep starts (before early stopping)."""
        if self.searcher == "optuna":
            return self.samples * (len(self.seeds) if self.seeds else 1)
        return self.grid_size() * self.samples

    def param_space(self) -> dict:
        """Ray Tune's param_space: {dotted key: search object}; seeds as a grid on `seed`
        (grid, random) or left to a Repeater (optuna: the trial's __trial_index__ picks it)."""
        from ray import tune
        space = {d.key: d.tune() for d in self.dimensions}
        if self.seeds and self.searcher != "optuna":
            space["seed"] = tune.grid_search(list(self.seeds))
        return space


def _fail(path, text: str):
    raise SpaceError(f"sweep space {path}: {text}")


def _dimension(path, key, spec) -> Dimension:
    if isinstance(spec, list):
        spec = {"grid": spec}
    if not isinstance(spec, dict) or len(spec) != 1:
        _fail(path, f"space.{key}: expected a list (grid) or one of {{{', '.join(DISTRIBUTIONS)}: ...}}, "
                    f"got {spec!r}")
    kind, values = next(iter(spec.items()))
    if kind not in DISTRIBUTIONS:
        _fail(path, f"space.{key}: unknown distribution {kind!r}; choose one of {', '.join(DISTRIBUTIONS)}")
    if not isinstance(values, list) or not values:
        _fail(path, f"space.{key}: {kind} needs a non-empty list, got {values!r}")
    if kind in ("uniform", "loguniform", "randint"):
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if len(values) != 2 or not numeric or not values[0] < values[1]:
            _fail(path, f"space.{key}: {kind} takes [low, high] numbers with low < high, got {values!r}")
        if kind == "loguniform" and values[0] <= 0:
            _fail(path, f"space.{key}: loguniform needs low > 0, got {values[0]!r}")
        if kind == "randint" and not all(isinstance(v, int) for v in values):
            _fail(path, f"space.{key}: randint takes integers, got {values!r}")
    return Dimension(str(key), kind, list(values))


def parse_space(path, overrides: dict | None = None) -> SweepSpace:
    """Read and check a space file (not yet against a config: see `check_space`)."""
    path = Path(path)
    if not path.is_file():
        raise SpaceError(f"sweep space {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpaceError(f"sweep space {path} is not valid YAML: {' '.join(str(exc).split())}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        _fail(path, f"expected a mapping with the keys {', '.join(TOP_KEYS)}")
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    unknown = [k for k in raw if k not in TOP_KEYS]
    if unknown:
        _fail(path, f"unknown key {unknown[0]!r}; allowed keys: {', '.join(TOP_KEYS)} "
                    f"(config keys go under space:)")
    dims_raw = raw.get("space") or {}
    if not isinstance(dims_raw, dict):
        _fail(path, f"space: expected a mapping of dotted config keys to distributions, got {dims_raw!r}")
    seeds = raw.get("seeds")
    if seeds is not None:
        if isinstance(seeds, int) and not isinstance(seeds, bool) and seeds >= 1:
            seeds = list(range(seeds))
        if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and s >= 0 for s in seeds)):
            _fail(path, f"seeds: expected a count or a list of non-negative integers, got {seeds!r}")
        if "seed" in dims_raw:
            _fail(path, "seed is given both as seeds: and under space:; keep one")
    if not dims_raw and not seeds:
        _fail(path, "the space is empty (no keys under space:, no seeds:); nothing to sweep")
    dims = [_dimension(path, k, v) for k, v in dims_raw.items()]
    searcher = raw.get("searcher") or ("grid" if all(d.kind == "grid" for d in dims) else "random")
    if searcher not in SEARCHERS:
        _fail(path, f"searcher {searcher!r} does not exist; choose one of {', '.join(SEARCHERS)}")
    if searcher == "grid":
        ranged = [d.key for d in dims if d.kind != "grid"]
        if ranged:
            _fail(path, f"searcher grid: space.{ranged[0]} is a {next(d.kind for d in dims if d.key == ranged[0])}; "
                        f"a grid takes lists only (use searcher: random or optuna)")
    if searcher == "optuna":
        grids = [d.key for d in dims if d.kind == "grid"]
        if grids:
            _fail(path, f"searcher optuna: space.{grids[0]} is a grid; an adaptive searcher takes choice, "
                        f"uniform, loguniform or randint (seeds: repeats every point)")
    samples = raw.get("samples", 1 if searcher == "grid" else None)
    if samples is None:
        _fail(path, f"searcher {searcher}: say how many trials to draw (samples: N)")
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        _fail(path, f"samples: expected a positive integer, got {samples!r}")
    mode = raw.get("mode", "max")
    if mode not in ("max", "min"):
        _fail(path, f"mode {mode!r}: choose max or min")
    metric = raw.get("metric", "val_accuracy")
    if not isinstance(metric, str) or not metric:
        _fail(path, f"metric: expected a metric name, got {metric!r}")
    sched = raw.get("scheduler", "none")
    sched = {"type": sched} if isinstance(sched, str) else sched
    if not isinstance(sched, dict) or sched.get("type") not in SCHEDULERS:
        _fail(path, f"scheduler {sched!r}: choose {', '.join(SCHEDULERS)} (or {{type: asha, grace_period: N, "
                    f"reduction_factor: N}})")
    allowed = {"asha": {"type", "grace_period", "reduction_factor"},
               "median": {"type", "grace_period", "min_samples_required"}, "none": {"type"}}[sched["type"]]
    extra = [k for k in sched if k not in allowed]
    if extra:
        _fail(path, f"scheduler.{extra[0]}: not an option of {sched['type']} (options: "
                    f"{', '.join(sorted(allowed - {'type'})) or 'none'})")
    for k, v in sched.items():
        if k != "type" and not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            _fail(path, f"scheduler.{k}: expected a positive integer, got {v!r}")
    if sched["type"] != "none" and metric not in EPOCH_METRICS:
        _fail(path, f"metric {metric!r} is known only when a trial ends, so scheduler {sched['type']} cannot "
                    f"stop trials early on it; use a per-epoch metric ({', '.join(EPOCH_METRICS)}) or "
                    f"scheduler: none")
    stages = raw.get("stages")
    if stages is not None and stages != "cotrain":
        from pipeline.stages import STAGES
        if isinstance(stages, str):
            stages = [s.strip() for s in stages.split(",")]
        if not isinstance(stages, list) or not stages:
            _fail(path, f"stages: expected cotrain or a list of stage names, got {stages!r}")
        bad = [s for s in stages if s not in STAGES]
        if bad:
            _fail(path, f"stages: {bad[0]!r} is not a stage; stages: cotrain, {', '.join(STAGES)}")
    pareto = raw.get("pareto")
    if pareto is not None:
        if not (isinstance(pareto, dict) and isinstance(pareto.get("x"), str) and isinstance(pareto.get("y"), str)):
            _fail(path, f"pareto: expected {{x: METRIC, y: METRIC}} (e.g. x: digital_macs_per_image, "
                        f"y: end_to_end_test_accuracy), got {pareto!r}")
        bad = [k for k in pareto if k not in ("x", "y", "x_mode", "y_mode")]
        if bad:
            _fail(path, f"pareto.{bad[0]}: unknown key; allowed: x, y, x_mode, y_mode")
        for k in ("x_mode", "y_mode"):
            if pareto.get(k, "min" if k == "x_mode" else "max") not in ("min", "max"):
                _fail(path, f"pareto.{k} {pareto[k]!r}: choose min or max")
    return SweepSpace(str(path), dims, searcher, samples, metric, mode, sched, stages, seeds, raw, pareto)


def _override(key: str, value) -> str:
    return f"{key}={json.dumps(value)}"     # JSON is YAML: the value arrives as it is


def trial_config(raw_base: dict, params: dict, where: str = "trial") -> dict:
    """The validated config of a trial: the base config with its params applied."""
    items = [_override(k, v) for k, v in params.items() if not k.startswith("__")]
    try:
        return validate_config(apply_overrides(raw_base, items))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def check_space(space: SweepSpace, raw_base: dict) -> int:
    """Validate every value each dimension can take (and every grid point together when
    there are at most GRID_LIMIT) on the base config; returns how many configs were checked."""
    checked = 0
    for dim in space.dimensions:
        for value in dim.probes():
            try:
                validate_config(apply_overrides(raw_base, [_override(dim.key, value)]))
            except ConfigError as exc:
                raise SpaceError(f"sweep space {space.path}: space.{dim.key} = {value!r}: {exc}") from None
            checked += 1
    if space.seeds:
        for s in space.seeds:
            trial_config(raw_base, {"seed": s}, f"sweep space {space.path}: seeds {s}")
    grid = [d for d in space.dimensions if d.kind == "grid"]
    if len(grid) > 1 and space.grid_size() <= GRID_LIMIT:
        for combo in itertools.product(*(d.values for d in grid)):
            params = dict(zip((d.key for d in grid), combo))
            trial_config(raw_base, params, f"sweep space {space.path}: grid point {params}")
            checked += 1
    return checked
