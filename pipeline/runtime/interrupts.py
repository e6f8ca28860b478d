"""Stopping from outside: SIGINT (Ctrl-C) and SIGTERM (`kill`, `timeout`, schedulers).

Python turns SIGINT into KeyboardInterrupt; `install()` makes SIGTERM raise `Terminated`
the same way (in the main thread, at the next bytecode), so the runner's cleanup runs for
both: the stage run and the co-training's parent run are ended with MLflow status KILLED
and tag mixsig.status=killed (a stage body that raises an error ends FAILED instead), the
stage's finished metrics and outputs are logged, and the CLI exits 128 + the signal
number (130 for SIGINT, 143 for SIGTERM).

An exception raised while the garbage collector runs a finalizer or a weakref callback
(TensorFlow's WeakKeyDictionary, say) is printed as "Exception ignored in ..." and
dropped, so a Ctrl-C landing there would be lost and the run would finish as if nothing
happened. The handlers therefore also record the signal, and `raise_pending()`, called
after each stage body and before the CLI reports success, raises it again. A second SIGTERM during that cleanup kills the
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


_PENDING: list[int] = []    # signals received and not yet seen handled


def _on_sigterm(signum, frame):
    _PENDING.append(signum)
    signal.signal(signum, signal.SIG_DFL)    # a second SIGTERM during cleanup kills at once
    raise Terminated(signum)


def _on_sigint(signum, frame):
    _PENDING.append(signum)
    raise KeyboardInterrupt


def install() -> None:
    """Make SIGTERM raise Terminated and SIGINT KeyboardInterrupt, both recorded for
    `raise_pending` (main thread only; elsewhere a no-op)."""
    _PENDING.clear()
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _on_sigint)
    except ValueError:    # not the main thread of the main interpreter
        pass


def raise_pending() -> None:
    """Raise a signal received earlier whose exception was swallowed (by a finalizer run
    during garbage collection); a no-op when none is pending."""
    if _PENDING:
        signum = _PENDING[0]
        raise KeyboardInterrupt if signum == signal.SIGINT else Terminated(signum)


def handled() -> None:
    """The pending signal's exception reached its handler: nothing is pending any more."""
    _PENDING.clear()


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
    from pipeline.runtime.tracking import tag
    try:
        if is_interruption(exc):
            mlflow.set_tag(tag("status"), STATUS_KILLED)
            mlflow.end_run("KILLED")
        else:
            mlflow.set_tag(tag("status"), error_status)
    except Exception:
        pass
