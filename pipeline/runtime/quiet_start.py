"""A quiet start: TensorFlow's start-up chatter muted, MLflow's bars kept out of logs, the
current folder importable.

TensorFlow writes about seven lines to the process's stderr (file descriptor 2, from C++,
so Python cannot filter them) while it is imported and when it first looks for a GPU:
"All log messages before absl::InitializeLog()", oneDNN notices, "Could not find cuda
drivers", "failed call to cuInit" on a CPU-only machine. `setup(debug=False)` sets
TF_CPP_MIN_LOG_LEVEL=3 (unless the user set it) and mutes descriptor 2 while the
`tensorflow` package itself is being imported (by whatever imports it first: Keras, an
encoder); with `--debug` all of it is kept (level 0 unless the user set one).

MLflow draws a tqdm bar for every artifact download ("Downloading artifacts"). When standard
error is not a terminal each redraw would stay in the log, so `setup` turns them off there
(unless the user set MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR); `-q` turns them off everywhere
(`mute_mlflow_bars`, called by the shared option in pipeline.commands.options). The
project's own bars make the same choice (analog.progress).

It also appends the current folder to `sys.path`, so that a plug-in encoder
`digital.encoder: "mymodule:factory"` next to where `mixsig` is started imports as it does
under `python -m pipeline` (appended, not prepended: a local file cannot shadow an
installed package).
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import sys

_USER_TF_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL")


@contextlib.contextmanager
def muted_stderr():
    """Descriptor 2 to /dev/null for the duration (C++ output included)."""
    try:
        sys.stderr.flush()
    except Exception:
        pass
    saved = os.dup(2)
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class _MutedLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        with muted_stderr():
            self.loader.exec_module(module)


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` once, with a loader that imports it under muted_stderr."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        remove_finder()
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _MutedLoader(spec.loader)
        return spec


def remove_finder() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _QuietTensorFlow)]


def mute_mlflow_bars() -> None:
    """No MLflow artifact progress bars in this process (MLflow reads the variable per download)."""
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def setup(debug: bool = False) -> None:
    if "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR" not in os.environ and not _stderr_is_terminal():
        mute_mlflow_bars()
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
    if debug:
        remove_finder()
        if _USER_TF_LEVEL is None:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        return
    if _USER_TF_LEVEL is None:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        # TensorFlow's Python warnings (e.g. tf.function retracing when several encoders
        # predict in one process) are noise to a user of this CLI; --debug keeps them
        import logging
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlow) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlow())
