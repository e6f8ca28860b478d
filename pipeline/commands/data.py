"""mixsig data: check the data sets, show a validated config."""
from __future__ import annotations

NAME = "data"
HELP = "check the data sets (data check) or print a validated, flattened config (data show)"


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="data_action", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="load and verify Fashion-MNIST, iris, wine and xor; print a summary",
                           description="Load and verify Fashion-MNIST (magic numbers, shapes, labels, sha256) "
                                       "and the small tabular sets; print a summary.")
    check.add_argument("--path", metavar="DIR", default=None,
                       help="folder with the Fashion-MNIST gzip IDX files (default: $MIXSIG_FASHION_MNIST_DIR, "
                            "else /usr/share/datasets/fashion-mnist)")
    check.add_argument("--no-verify", action="store_true", help="skip the sha256 check (modified copies)")
    show = sub.add_parser("show", help="print a config after validation, defaults filled, as dotted keys",
                          description="Validate a YAML config and print every key (defaults filled) as key = value.")
    show.add_argument("config", help="experiment YAML file")


def _check(args) -> int:
    import time

    import numpy as np

    from pipeline.data import fashion_mnist_dir, load_dataset, load_fashion_mnist

    t0 = time.perf_counter()
    xtr, ytr, xte, yte = load_fashion_mnist(args.path, verify=not args.no_verify)
    dt = time.perf_counter() - t0
    print(f"fashion_mnist: {fashion_mnist_dir(args.path)} ({'sha256 verified' if not args.no_verify else 'not verified'}, "
          f"{dt:.2f} s)")
    print(f"  train {xtr.shape} {xtr.dtype}, labels per class {np.bincount(ytr, minlength=10).tolist()}")
    print(f"  test  {xte.shape} {xte.dtype}, labels per class {np.bincount(yte, minlength=10).tolist()}")
    for name in ("iris", "wine", "xor"):
        print(load_dataset({"dataset": name}, seed=0).summary())
    print("data: all checks passed")
    return 0


def _show(args) -> int:
    from pipeline.config import flatten, load_config

    flat = flatten(load_config(args.config))
    width = max(map(len, flat))
    for key, value in flat.items():
        print(f"{key:<{width}} = {value!r}" if isinstance(value, str) else f"{key:<{width}} = {value}")
    return 0


def run(args) -> int:
    return _check(args) if args.data_action == "check" else _show(args)
