"""Stopping from outside: SIGINT (Ctrl-C) and SIGTERM (`kill`, `timeout`, schedulers).

Python turns SIGINT into KeyboardInterrupt; `install()` makes SIGTERM raise `Terminated`
the same way (in the main thread, at the next bytecode), so the runner's cleanup runs for
both: the stage run and the co-training's parent run are ended with MLflow status KILLED
and tag mixsig.status=killed (a stage body that raises an error ends FAILED instead), the
stage's finished metrics and outputs are logged, and the CLI exits 128 + the signal
number (130 for SIGINT, 143 for SIGTERM). A second SIGTERM during that cleanup kills the
process at once (the default action), so a stuck cleanup can always be stopped; `cotrain
--resume` then closes what was left RUNNING.
"""
from __future__ import annotations

import signal

STATUS_KILLED = "killed"


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM (a BaseException, like KeyboardInterrupt, so
    `except Exception` in library code does not swallow it)."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


def _on_sigterm(signum, frame):
    signal.signal(signum, signal.SIG_DFL)    # a second SIGTERM during cleanup kills at once
    raise Terminated(signum)


def install() -> None:
    """Make SIGTERM raise Terminated (main thread only; elsewhere a no-op)."""
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:    # not the main thread of the main interpreter
        pass


def is_interruption(exc: BaseException) -> bool:
    return isinstance(exc, (KeyboardInterrupt, Terminated))


def exit_code(exc: BaseException) -> int:
    """128 + signal number: 130 for SIGINT (KeyboardInterrupt), 143 for SIGTERM."""
    if isinstance(exc, Terminated):
        return 128 + int(exc.signum)
    return 128 + int(signal.SIGINT)


def describe(exc: BaseException) -> str:
    return "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted (SIGINT)"


def end_active_run(exc: BaseException, error_status: str = "failed") -> None:
    """In the `except` of a `with mlflow.start_run()` block: tag the active run and, for a
    signal, end it KILLED now (the `with` block then leaves it as it is; for an error it
    ends it FAILED). Errors while recording are ignored: the original exception matters."""
    import mlflow
    from pipeline.stages.lineage import tag
    try:
        if is_interruption(exc):
            mlflow.set_tag(tag("status"), STATUS_KILLED)
            mlflow.end_run("KILLED")
        else:
            mlflow.set_tag(tag("status"), error_status)
    except Exception:
        pass
