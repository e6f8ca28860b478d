"""The one way the pipeline reaches Ray: an embedded local Ray, or a cluster by address.

`mixsig signoff` (actors) and `mixsig sweep` (trials) both call `connect`. An address that
cannot be reached fails in seconds with one line (Ray itself retries for minutes); an
already initialised Ray (a test's, a cluster script's) is used as it is. A bad address is
the user's to fix (`RayClusterError`, exit 2); an embedded Ray that cannot start is the
machine's (`RayStartError`, exit 1); both are one line naming the address or the setting.
"""
from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass

from pipeline.errors import StoppedByEnvironment, UserError

__all__ = ["RayClusterError", "RayStartError", "RaySession", "check_address", "connect", "WORKER_NICENESS"]

#: Ray starts its workers at niceness 15 by default, to keep its own daemons responsive. The
#: actors and trials are the command's work, so the embedded Ray runs them at the normal
#: priority: at 15, on a machine busy with other work, they only got the CPU the others left,
#: and a second actor split that instead of adding a core (measured: 2 actors 0.66–0.99× of 1).
WORKER_NICENESS = 0


class RayClusterError(UserError):
    """A Ray cluster address that is malformed, unreachable or refuses the connection."""


class RayStartError(StoppedByEnvironment):
    """The embedded Ray did not start on this machine (its processes, ports, temporary
    folder or shared memory): not a fault of the user's input."""


def _one_line(exc: BaseException) -> str:
    """Ray's exception as `Type: text` on one line, cut short (its messages run to pages)."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


@dataclass
class RaySession:
    """A Ray connection: embedded (started here, shut down by `close`) or a cluster's."""
    address: str | None
    embedded: bool
    started: bool = False

    def close(self) -> None:
        import ray
        if self.started and ray.is_initialized():
            ray.shutdown()


def check_address(address: str, given_as: str = "--address") -> None:
    """HOST:PORT (or ray://HOST:PORT) answers a TCP connection within 5 s. 'auto' and
    'local' are Ray's own and are not probed. `given_as`: where the address came from, for
    the error."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise RayClusterError(f"{given_as} {address!r}: expected HOST:PORT (the head node's GCS address, e.g. "
                              f"10.0.0.5:6379), ray://HOST:PORT or auto")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as exc:
        raise RayClusterError(f"{given_as} {address!r}: cannot reach the Ray cluster, unreachable "
                              f"({exc.strerror or exc}); start it with `ray start --head` there, or check "
                              f"--address / RAY_ADDRESS") from None


def connect(address: str | None, *, num_cpus: int | None = None, env: dict | None = None, verbose: int = 1,
            object_store_bytes: int | None = None) -> RaySession:
    """Join the cluster at `address` (or RAY_ADDRESS), else start an embedded Ray with
    `num_cpus` CPUs (default: this machine's). `env`: environment variables every worker
    gets (the project home, the tracking URI)."""
    import ray
    given_as = "--address" if address else "RAY_ADDRESS"
    address = address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized():
        return RaySession(address, embedded=False, started=False)
    options = dict(include_dashboard=False, log_to_driver=verbose > 1)
    if verbose <= 1:
        options["logging_level"] = logging.ERROR       # its token-authentication notice
    if env:
        options["runtime_env"] = {"env_vars": dict(env)}
    if address:
        check_address(address, given_as)
        options.pop("include_dashboard")
        try:
            ray.init(address=address, **options)
        except Exception as exc:
            raise RayClusterError(f"{given_as} {address!r}: cannot join the Ray cluster ({_one_line(exc)})") from exc
        return RaySession(address, embedded=False, started=True)
    if object_store_bytes:
        options["object_store_memory"] = int(object_store_bytes)
    try:
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1,
                 _system_config={"worker_niceness": WORKER_NICENESS}, **options)
    except Exception as exc:
        raise RayStartError(f"the embedded Ray did not start on this machine ({_one_line(exc)}); check the free "
                            f"space of its temporary folder (RAY_TMPDIR, else /tmp) and of /dev/shm, or join a "
                            f"running cluster with --address") from exc
    return RaySession(None, embedded=True, started=True)
