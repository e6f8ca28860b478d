"""Where input optimisation (`targets`) loses against through-analog retraining on a frozen
chip, stage by stage, on a slice: from one trained encoder and block (a co-training's
train-digital and train-analog folders), program the config's chip `--chip` (seed
hardware.seed + chip, ADC calibrated as the program step does), then

  through   retrain a copy of the encoder through the chip (the pipeline's through-analog
            step: digital.through_loss, through_lr, retrain_epochs, class_weight)
  targets   for every --case: optimise the inputs of the training images and of --heldout
            test images on the chip (the config's input_optimization.* with the case's
            overrides), then regress a copy of the encoder onto the training targets
            (fit_targets with digital.target_weight, class_weight, retrain_epochs)

and measure (a) the targets themselves: the share past the margin and the chip's accuracy on
the targets, train and held-out; (b) the encoder's fit: MSE, R² (1 − SSE / Σ‖t − mean t‖²)
and the share of the requested shift reproduced, train and held-out, and the chip's accuracy
on the retrained encoder's embeddings of the training images and of the test images; (c) the
recovery (after − programmed) / (ideal − programmed) on the test images, and its ratio to
through-analog's. A case is NAME:key=value,... with keys of input_optimization (steps, lr,
step_growth, cost, margin, temperature, shift_penalty), clip (targets clipped to that
fraction of the embedding range) and target_weight, class_weight, epochs (the fit).

    python experiments/targets_probe.py experiments/fashion_mnist_stress.yaml \
        --encoder RUN/00-train-digital-r0/encoder --analog RUN/02-train-analog-r0/analog_model \
        --set data.limit_train=4000 --set data.limit_test=3000 --set digital.encoder=mlp \
        --through --case ce20:cost=cross_entropy --json stress.json
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

IO_KEYS = {"steps": int, "lr": float, "step_growth": float, "cost": str, "margin": float,
           "temperature": float, "shift_penalty": float}
FIT_KEYS = {"target_weight": float, "class_weight": float, "epochs": int, "clip": float}


def _args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config")
    p.add_argument("--encoder", required=True, help="encoder folder (a train-digital step's)")
    p.add_argument("--analog", required=True, help="analog_model folder (a train-analog step's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="config override KEY=VALUE")
    p.add_argument("--chip", type=int, default=0, help="the chip in the loop (seed hardware.seed + chip)")
    p.add_argument("--heldout", type=int, default=1000, help="test images whose targets are optimised")
    p.add_argument("--through", action="store_true", help="also retrain through the chip (the reference)")
    p.add_argument("--case", action="append", default=[], help="NAME:key=value,... (see the docstring)")
    p.add_argument("--json", help="write the figures here (each case as it finishes)")
    return p.parse_args()


def _parse_case(text: str) -> tuple[str, dict, dict]:
    name, _, body = text.partition(":")
    io, fit = {}, {}
    for item in filter(None, body.split(",")):
        key, _, value = item.partition("=")
        if key in IO_KEYS:
            io[key] = IO_KEYS[key](value)
        elif key in FIT_KEYS:
            fit[key] = FIT_KEYS[key](value)
        else:
            raise SystemExit(f"--case {name}: unknown key {key!r}; one of {', '.join([*IO_KEYS, *FIT_KEYS])}")
    return name, io, fit


def _fit_stats(e0, t, e1) -> dict:
    """How well embeddings e1 reproduce targets t (e0: the embeddings before)."""
    from pipeline.system.through_analog import shift_followed
    sse = float(((e1 - t) ** 2).sum())
    sst = float(((t - t.mean(0)) ** 2).sum())
    s = shift_followed(e0, t, e1)
    return {"mse": sse / t.size, "r2": 1.0 - sse / sst, "shift_reproduced": s["reproduced"],
            "residual": s["residual"]}


class Probe:
    def __init__(self, a):
        from analog.hardware import program
        from pipeline.flow import load_config_with_overrides
        from pipeline.flow.artifacts import load_analog
        from pipeline.flow.inputs import dataset
        from pipeline.stages.program import CALIBRATION_SAMPLES
        from pipeline.system.analog_block import hardware_spec
        from pipeline.system.build import load_encoder
        self.a, self.cfg = a, load_config_with_overrides(a.config, a.overrides)
        self.ds = dataset(self.cfg)
        self.model = load_analog(a.analog)
        enc = load_encoder(self.cfg, a.encoder)
        self.e0 = {"train": enc.embed(self.ds.x_train), "test": enc.embed(self.ds.x_test)}
        self.chip = program(self.model, hardware_spec(self.cfg), int(self.cfg.hardware.seed or self.cfg.seed) + a.chip)
        self.chip.calibrate_adc(self.e0["train"][:CALIBRATION_SAMPLES])
        yt = self.ds.y_test
        self.out = {"ideal": self.model.accuracy(self.e0["test"], yt),
                    "programmed": self.chip.accuracy(self.e0["test"], yt),
                    "programmed_train": self.chip.accuracy(self.e0["train"], self.ds.y_train),
                    "chip_seed": self.chip.seed, "n_train": len(self.ds.x_train), "n_test": len(yt), "cases": {}}
        self._say("base", {k: v for k, v in self.out.items() if k != "cases"})

    def encoder(self):
        from pipeline.system.build import load_encoder
        return load_encoder(self.cfg, self.a.encoder)

    def recovered(self, acc: float) -> float:
        return (acc - self.out["programmed"]) / (self.out["ideal"] - self.out["programmed"])

    def chip_acc(self, enc) -> dict:
        return {"chip_train": self.chip.accuracy(enc.embed(self.ds.x_train), self.ds.y_train),
                "chip_test": self.chip.accuracy(enc.embed(self.ds.x_test), self.ds.y_test)}

    def through(self) -> None:
        from pipeline.system.through_analog import grad_fn_for, through_cost
        d, enc = self.cfg.digital, self.encoder()
        grad_fn = grad_fn_for(self.chip, self.ds.y_train, self.cfg.input_optimization.method, loss=through_cost(self.cfg))
        t0 = time.perf_counter()
        enc.fit_through(self.ds.x_train, self.ds.y_train, grad_fn, epochs=d.retrain_epochs, batch_size=d.batch_size,
                        learning_rate=d.through_lr, class_weight=d.class_weight, verbose=0)
        r = {**self.chip_acc(enc), "seconds": time.perf_counter() - t0}
        r["recovered"] = self.recovered(r["chip_test"])
        self.out["through"] = r
        self._say("through", r)

    def optimise(self, io: dict, part: str, n: int | None = None):
        from analog.input_optimization import optimize_inputs
        from pipeline.flow.stage_data import input_box
        c = self.cfg.input_optimization
        kw = {"lr": c.lr, "steps": c.steps, "margin": c.margin, "step_growth": c.step_growth, "update": c.update,
              "cost": c.cost, "temperature": c.temperature, "shift_penalty": 0.0, **io}
        cost = None if kw["cost"] == "block" else self._cost(kw)
        lo, hi = input_box(self.cfg, None)
        y = (self.ds.y_train if part == "train" else self.ds.y_test)[:n]
        return optimize_inputs(self.chip, self.e0[part][:n], y, lr=kw["lr"], steps=kw["steps"], margin=kw["margin"],
                               v_low=lo, v_high=hi, update=kw["update"], step_growth=kw["step_growth"],
                               batch_size=c.batch_size, cost=cost, shift_penalty=kw["shift_penalty"], progress=False)

    @staticmethod
    def _cost(kw):
        from analog.losses import CrossEntropy, Margin
        return CrossEntropy(temperature=kw["temperature"]) if kw["cost"] == "cross_entropy" else Margin(margin=kw["margin"])

    def case(self, name: str, io: dict, fit: dict, cache: dict) -> None:
        key = json.dumps(io, sort_keys=True)
        if key not in cache:   # targets are reused by cases that differ only in the fit
            cache[key] = (self.optimise(io, "train"), self.optimise(io, "test", self.a.heldout))
        tr, te = cache[key]
        r = self._targets_quality(tr, te)
        t_train, t_test = tr.targets, te.targets
        if "clip" in fit:
            half, mid = 0.5 * (self.cfg.digital.v_high - self.cfg.digital.v_low), 0.5 * (self.cfg.digital.v_high + self.cfg.digital.v_low)
            t_train = np.clip(t_train, mid - fit["clip"] * half, mid + fit["clip"] * half)
            t_test = np.clip(t_test, mid - fit["clip"] * half, mid + fit["clip"] * half)
            r["chip_on_clipped_targets_train"] = self.chip.accuracy(t_train, self.ds.y_train)
        d, enc = self.cfg.digital, self.encoder()
        t0 = time.perf_counter()
        enc.fit_targets(self.ds.x_train, t_train, self.ds.y_train if fit.get("class_weight", d.class_weight) > 0 else None,
                        epochs=fit.get("epochs", d.retrain_epochs), target_weight=fit.get("target_weight", d.target_weight),
                        class_weight=fit.get("class_weight", d.class_weight), verbose=0)
        r["fit_seconds"] = time.perf_counter() - t0
        n = len(t_test)
        r["fit_train"] = _fit_stats(self.e0["train"], t_train, enc.embed(self.ds.x_train))
        r["fit_heldout"] = _fit_stats(self.e0["test"][:n], t_test, enc.embed(self.ds.x_test[:n]))
        r.update(self.chip_acc(enc))
        r["recovered"] = self.recovered(r["chip_test"])
        if "through" in self.out:
            r["of_through"] = r["recovered"] / self.out["through"]["recovered"]
        r["io"], r["fit"] = io, fit
        self.out["cases"][name] = r
        self._say(name, r)

    def _targets_quality(self, tr, te) -> dict:
        from pipeline.flow.stage_data import input_box
        lo, hi = input_box(self.cfg, None)
        at_bound = np.mean((tr.targets <= lo + 1e-9) | (tr.targets >= hi - 1e-9))
        return {"reached_train": float(tr.reached.mean()), "reached_before_train": float(tr.initially_reached.mean()),
                "reached_heldout": float(te.reached.mean()), "mean_shift": float(tr.shifts.mean()),
                "at_bound_share": float(at_bound), "io_seconds": tr.seconds + te.seconds,
                "chip_on_targets_train": self.chip.accuracy(tr.targets, self.ds.y_train),
                "chip_on_targets_heldout": self.chip.accuracy(te.targets, self.ds.y_test[:len(te.targets)]),
                "mean_steps": float(tr.steps.mean())}

    def _say(self, what: str, r) -> None:
        print(what, json.dumps(r, default=float), flush=True)
        if self.a.json:
            with open(self.a.json, "w") as f:
                json.dump(self.out, f, indent=1, default=float)


def main() -> None:
    a = _args()
    cases = [_parse_case(c) for c in a.case]
    probe = Probe(a)
    if a.through:
        probe.through()
    cache: dict = {}
    for name, io, fit in cases:
        probe.case(name, io, fit, cache)


if __name__ == "__main__":
    main()
