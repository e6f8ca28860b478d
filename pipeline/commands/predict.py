"""mixsig predict RUN_ID INPUT: classify one's own images with a trained system (the ideal
block or a programmed chip), as a CSV (pipeline/serving)."""
from __future__ import annotations

import click

from pipeline.commands import options as opt

HELP = "classify images (.npy, IDX, or a folder of PNG/JPEG) with a trained system; a CSV of classes and scores"


@click.command("predict", short_help=HELP, help=(
    HELP + ". RUN_ID: a co-training (its last evaluate run) or an evaluate run; the encoder, trained analog "
    "block and programmed chips it names are loaded from their run folders. INPUT: a .npy array of grey images "
    "(N, 28, 28) or (N, 28, 28, 1), pixel values 0..255 (floats in 0..1 are scaled by 255); an IDX images file "
    "(gzip or not); a PNG/JPEG file or a folder of them (each made 8-bit grey, its longer side scaled to 28 "
    "pixels, centred on a black 28x28 canvas; Fashion-MNIST shows light objects on black, no inversion is done). "
    "Output: one CSV row per image: name (file name, or index in the array), class, class_name, score_0 ... "
    "score_9 (the block's output voltages; class -1 where the solver did not converge). Nothing is written "
    "when an input or an option is wrong (exit code 2)."))
@click.argument("run_id")
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=str))
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="write the CSV to this file (default: standard output)")
@click.option("--chip", type=int, default=None,
              help="classify with programmed chip K of the run (0-based) instead of the ideal block")
@click.option("--time", "read_time", type=float, default=None,
              help="with --chip: read the chip this many seconds after programming (drift; default 0)")
@opt.engine("circuit simulator; ngspice gives a sign-off-grade answer, slowly: for a few images")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="images per batch (one chip read per batch)")
@opt.workdir
@opt.quiet
def command(run_id, input_path, output, chip, read_time, engine, batch_size, workdir, quiet) -> int:
    import os
    import sys

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")   # the CSV may go to stdout
    from pipeline.serving.bundle import load_run_system
    from pipeline.serving.images import ServingInputError, read_input
    from pipeline.runtime.tracking import setup_mlflow
    if chip is not None and chip < 0:
        raise ServingInputError(f"--chip {chip}: chips are numbered from 0")
    names, images = read_input(input_path)
    setup_mlflow()
    system = load_run_system(run_id, opt.workdir_or_default(workdir) / "_cache")
    try:
        system.check_request(chip, read_time, engine)
        frame = _classify(system, images, chip, read_time, engine, batch_size, quiet)
    finally:
        system.close()
    frame.insert(0, "name", names)
    text = frame.to_csv(index=False, float_format="%.9g")
    if output is None:
        sys.stdout.write(text)
    else:
        with open(output, "w") as f:
            f.write(text)
        if not quiet:
            print(f"{len(frame)} image(s) classified → {output}", file=sys.stderr)
    return 0


def _classify(system, images, chip, read_time, engine, batch_size, quiet):
    """The system's answer, with a progress bar (standard error) when there is more than one batch."""
    import sys

    from tqdm import tqdm
    what = "ideal block" if chip is None else f"chip {chip} at t = {read_time or 0:g} s"
    with tqdm(total=len(images), unit="image", desc=f"{what}, {engine}", file=sys.stderr, dynamic_ncols=True,
              disable=quiet or len(images) <= batch_size, mininterval=0.5) as bar:
        return system.classify(images, chip, read_time, engine, batch_size, on_batch=bar.update)
