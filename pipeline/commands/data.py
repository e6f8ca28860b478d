"""mixsig data: check the data sets (and `data show`, the former name of `config show`)."""
from __future__ import annotations

import click

from pipeline.commands import options as opt


@click.group("data", short_help="check the data sets (data check); data show is config show")
def command():
    """The data sets: `check` loads and verifies them; `show` is `mixsig config show`."""


@command.command("check", short_help="load and verify Fashion-MNIST, iris, wine and xor; print a summary")
@click.option("--path", metavar="DIR", default=None,
              help="folder with the Fashion-MNIST gzip IDX files (default: $MIXSIG_FASHION_MNIST_DIR, "
                   "else /usr/share/datasets/fashion-mnist)")
@click.option("--no-verify", is_flag=True, help="skip the sha256 check (modified copies)")
def check(path, no_verify) -> int:
    """Load and verify Fashion-MNIST (magic numbers, shapes, labels, sha256) and the small
    tabular sets; print a summary."""
    import time

    import numpy as np

    from pipeline.data import fashion_mnist_dir, load_dataset, load_fashion_mnist

    t0 = time.perf_counter()
    xtr, ytr, xte, yte = load_fashion_mnist(path, verify=not no_verify)
    dt = time.perf_counter() - t0
    click.echo(f"fashion_mnist: {fashion_mnist_dir(path)} ({'not verified' if no_verify else 'sha256 verified'}, "
               f"{dt:.2f} s)")
    click.echo(f"  train {xtr.shape} {xtr.dtype}, labels per class {np.bincount(ytr, minlength=10).tolist()}")
    click.echo(f"  test  {xte.shape} {xte.dtype}, labels per class {np.bincount(yte, minlength=10).tolist()}")
    for name in ("iris", "wine", "xor"):
        click.echo(load_dataset({"dataset": name}, seed=0).summary())
    click.echo("data: all checks passed")
    return 0


@command.command("show", short_help="the same as `mixsig config show`")
@click.argument("config")
@opt.overrides
def show(config, overrides) -> int:
    """Validate CONFIG and print every key (defaults filled) as key = value; the same as
    `mixsig config show CONFIG`."""
    from pipeline.commands.config import show_config
    return show_config(config, overrides)
