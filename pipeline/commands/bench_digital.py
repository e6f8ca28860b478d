"""mixsig bench --digital: seconds per CNN training epoch, per retraining-to-targets epoch and
per embedding pass of CNNEncoder variants (digital.bench_cnn.speed) on the first Fashion-MNIST
training images, all in one process, so variants compare by ratio on a shared machine
(docs/results-main-job.md)."""
from __future__ import annotations

import ast

from pipeline.errors import OptionError


def parse_variant(text: str) -> tuple[str, dict]:
    """NAME[:key=value;...] → (NAME, CNNEncoder params); values are Python literals."""
    name, _, rest = text.partition(":")
    if not name:
        raise OptionError(f"--digital-variant {text!r}: give it a name, NAME[:key=value;...]")
    params = {}
    for item in filter(None, rest.split(";")):
        key, eq, value = item.partition("=")
        try:
            if not eq or not key.strip():
                raise ValueError("not key=value")
            params[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError) as exc:
            raise OptionError(f"--digital-variant {text!r}: {item!r} is not key=<Python literal> ({exc})") from None
    return name, params


def run_digital_bench(variants: tuple[str, ...], samples: int) -> dict:
    """Each variant's figures ([wall, CPU] s per 54,000 images), in the order given."""
    from digital import CNNEncoder
    from digital.bench_cnn import speed
    from pipeline.data import load_fashion_mnist
    parsed = [parse_variant(v) for v in variants or ("base",)]
    for text, (_, params) in zip(variants or ("base",), parsed):
        try:
            CNNEncoder(**params)
        except (TypeError, ValueError) as exc:    # refuse a bad variant before timing any
            raise OptionError(f"--digital-variant {text!r}: {exc}") from None
    x, y = load_fashion_mnist()[:2]
    x, y = x[:samples], y[:samples]
    return {"digital": [{"variant": name, **speed(params, x, y)} for name, params in parsed]}


def print_digital_bench(res: dict) -> None:
    rows = res["digital"]
    print(f"CNN encoder, seconds per 54,000 images (wall / CPU; {rows[0]['n']} images timed)")
    print(f"  {'variant':<14} {'fit epoch':>15} {'fit_targets epoch':>19} {'embed pass':>15}")
    for r in rows:
        cols = ["{:.1f} / {:.1f}".format(*r[k]) for k in ("fit_epoch_s", "fit_targets_epoch_s", "embed_s")]
        print(f"  {r['variant']:<14} {cols[0]:>15} {cols[1]:>19} {cols[2]:>15}")
