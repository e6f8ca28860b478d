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
from pathlib import Path
from typing import ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from pipeline.config import ConfigError, RootConfig, apply_overrides, validate_config
from pipeline.config.errors import from_validation_error

SEARCHERS = ("grid", "random", "optuna")
DISTRIBUTIONS = ("grid", "choice", "uniform", "loguniform", "randint")
# metrics every epoch of the analog block reports (analog.AnalogModel.fit logs); the others
# (test accuracies, end to end, ...) only exist when a trial ends, so they cannot stop one early
EPOCH_METRICS = ("val_accuracy", "val_loss", "accuracy", "loss")
GRID_LIMIT = 2000   # grid points whose joint config is validated up front (beyond: each value alone)

SpaceError = ConfigError    # a space file that cannot be used: one line `error: ...`, exit 2
PositiveInt = Field(default=None, ge=1, strict=True)
_STRICT = ConfigDict(extra="forbid", frozen=True)


class Dimension(BaseModel):
    """One swept config key: a grid or choice of values, or a [low, high] range."""
    model_config = _STRICT
    key: str
    kind: Literal["grid", "choice", "uniform", "loguniform", "randint"]
    values: list = Field(min_length=1)

    @model_validator(mode="after")
    def _range(self):
        v = self.values
        if self.kind in ("uniform", "loguniform", "randint"):
            numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
            if len(v) != 2 or not numeric or not v[0] < v[1]:
                raise ValueError(f"{self.kind} takes [low, high] numbers with low < high, got {v!r}")
            if self.kind == "loguniform" and v[0] <= 0:
                raise ValueError(f"loguniform needs low > 0, got {v[0]!r}")
            if self.kind == "randint" and not all(isinstance(x, int) for x in v):
                raise ValueError(f"randint takes integers, got {v!r}")
        return self

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


class Scheduler(BaseModel):
    """Early stopping: ASHA, the median rule, or none."""
    model_config = _STRICT
    type: Literal["asha", "median", "none"] = "none"
    grace_period: int | None = PositiveInt
    reduction_factor: int | None = PositiveInt          # asha only
    min_samples_required: int | None = PositiveInt      # median only
    #: what an option left out (None) means: Ray Tune's own defaults for these schedulers
    DEFAULTS: ClassVar[dict] = {"grace_period": 1, "reduction_factor": 2, "min_samples_required": 3}

    @model_validator(mode="after")
    def _options(self):
        own = {"asha": {"grace_period", "reduction_factor"}, "median": {"grace_period", "min_samples_required"},
               "none": set()}[self.type]
        extra = [k for k in ("grace_period", "reduction_factor", "min_samples_required")
                 if getattr(self, k) is not None and k not in own]
        if extra:
            raise ValueError(f"scheduler.{extra[0]}: not an option of {self.type} "
                             f"(options: {', '.join(sorted(own)) or 'none'})")
        return self

    def options(self) -> dict:
        """The options the space file gives (for the record)."""
        return {k: v for k, v in self.model_dump(exclude={"type"}).items() if v is not None}

    def setting(self, name: str) -> int:
        """The option `name` in effect: the space file's, else its default."""
        value = getattr(self, name)
        return self.DEFAULTS[name] if value is None else value


class Pareto(BaseModel):
    """Two metrics whose Pareto front over the finished trials is drawn."""
    model_config = _STRICT
    x: str = Field(min_length=1)
    y: str = Field(min_length=1)
    x_mode: Literal["min", "max"] = "min"
    y_mode: Literal["min", "max"] = "max"


class SweepSpace(BaseModel):
    """A sweep space file, validated whole (not yet against a config: see `check_space`)."""
    model_config = _STRICT
    searcher: Literal["grid", "random", "optuna"] | None = None   # default: grid if every key is a list
    samples: int | None = PositiveInt    # trials drawn (random, optuna); grid: repeats of the whole grid
    metric: str = Field("val_accuracy", min_length=1)
    mode: Literal["max", "min"] = "max"
    scheduler: Scheduler = Scheduler()
    stages: Literal["cotrain"] | list[str] | None = None   # None: cotrain for images, else train-analog, evaluate
    seeds: list[int] | None = None
    space: dict[str, Dimension] = {}
    pareto: Pareto | None = None
    _path: str = PrivateAttr("")

    @field_validator("scheduler", mode="before")
    @classmethod
    def _scheduler_name(cls, v):
        return {"type": v} if isinstance(v, str) or v is None else v

    @field_validator("space", mode="before")
    @classmethod
    def _dimensions(cls, v):
        if not isinstance(v, dict):
            return v
        out = {}
        for key, spec in v.items():
            spec = {"grid": spec} if isinstance(spec, list) else spec
            if not isinstance(spec, dict) or len(spec) != 1:
                raise ValueError(f"space.{key}: expected a list (grid) or one of "
                                 f"{{{', '.join(DISTRIBUTIONS)}: ...}}, got {spec!r}")
            kind, values = next(iter(spec.items()))
            if kind not in DISTRIBUTIONS:
                raise ValueError(f"space.{key}: unknown distribution {kind!r}; choose one of "
                                 f"{', '.join(DISTRIBUTIONS)}")
            out[key] = {"key": str(key), "kind": kind, "values": values}
        return out

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_count(cls, v):
        if isinstance(v, int) and not isinstance(v, bool) and v >= 1:
            return list(range(v))
        if not (v is None or (isinstance(v, list) and v and all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in v))):
            raise ValueError(f"expected a count or a list of non-negative integers, got {v!r}")
        return v

    @field_validator("stages", mode="before")
    @classmethod
    def _stage_names(cls, v):
        if isinstance(v, str) and v != "cotrain":
            v = [s.strip() for s in v.split(",")]
        if isinstance(v, list):
            from pipeline.stages import STAGES
            if not v:
                raise ValueError("expected cotrain or a list of stage names, got []")
            bad = [s for s in v if s not in STAGES]
            if bad:
                raise ValueError(f"{bad[0]!r} is not a stage; stages: cotrain, {', '.join(STAGES)}")
        return v

    @model_validator(mode="after")
    def _consistent(self):
        dims = list(self.space.values())
        if self.seeds and "seed" in self.space:
            raise ValueError("seed is given both as seeds: and under space:; keep one")
        if not dims and not self.seeds:
            raise ValueError("the space is empty (no keys under space:, no seeds:); nothing to sweep")
        # the defaults that depend on the dimensions: returned as a copy, the space is frozen
        searcher = self.searcher or ("grid" if all(d.kind == "grid" for d in dims) else "random")
        samples = self.samples
        if searcher == "grid":
            ranged = [d for d in dims if d.kind != "grid"]
            if ranged:
                raise ValueError(f"searcher grid: space.{ranged[0].key} is a {ranged[0].kind}; a grid takes "
                                 f"lists only (use searcher: random or optuna)")
            if samples is None:
                samples = 1
        if searcher == "optuna" and any(d.kind == "grid" for d in dims):
            grid = next(d for d in dims if d.kind == "grid")
            raise ValueError(f"searcher optuna: space.{grid.key} is a grid; an adaptive searcher takes choice, "
                             f"uniform, loguniform or randint (seeds: repeats every point)")
        if samples is None:
            raise ValueError(f"searcher {searcher}: say how many trials to draw (samples: N)")
        if self.scheduler.type != "none" and self.metric not in EPOCH_METRICS:
            raise ValueError(f"metric {self.metric!r} is known only when a trial ends, so scheduler "
                             f"{self.scheduler.type} cannot stop trials early on it; use a per-epoch metric "
                             f"({', '.join(EPOCH_METRICS)}) or scheduler: none")
        if (searcher, samples) == (self.searcher, self.samples):
            return self
        return self.model_copy(update={"searcher": searcher, "samples": samples})

    @property
    def path(self) -> str:
        return self._path

    @property
    def dimensions(self) -> list[Dimension]:
        return list(self.space.values())

    @property
    def keys(self) -> list[str]:
        return list(self.space)

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


def space_from(raw: dict, path: str = "space") -> SweepSpace:
    """A validated SweepSpace from a mapping; a problem is one line naming the key."""
    try:
        space = SweepSpace.model_validate(raw)
    except ValidationError as exc:
        raise SpaceError(f"sweep space {path}: {from_validation_error(exc, SweepSpace)}") from None
    space._path = str(path)
    return space


def parse_space(path, overrides: dict | None = None) -> SweepSpace:
    """Read and check a space file (`overrides`: command-line searcher / samples)."""
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
        raise SpaceError(f"sweep space {path}: expected a mapping with the keys {', '.join(SweepSpace.model_fields)}")
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return space_from(raw, str(path))


def _override(key: str, value) -> str:
    return f"{key}={json.dumps(value)}"     # JSON is YAML: the value arrives as it is


def trial_config(raw_base: dict, params: dict, where: str = "trial") -> RootConfig:
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
