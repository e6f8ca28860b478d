"""Who is running a co-training: one process at a time per parent run.

A co-training process holds an exclusive `fcntl.flock` on `.mixsig-locks/<parent_run_id>.lock`
(beside the SQLite store, or in the project folder for other stores) for as long as it
lives, and records itself on the parent run as the tags mixsig.host, mixsig.pid and
mixsig.started (UTC). The operating system releases the lock when the process ends however
it ends (SIGKILL, a crash, the machine's power), so on the same host:

  lock held      the co-training is alive: `cotrain --resume` is refused, naming its pid,
                 host and start time (a second process would start duplicate stage runs);
  lock free      its process is gone: the resume takes the lock, and the stage runs it left
                 RUNNING are closed as KILLED (pipeline.cotraining.run) before the work goes on.

A parent run still RUNNING whose tags name another host cannot be checked from here; the
resume is refused unless `cotrain --resume ID --force` says that process is gone.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.runtime.tracking import tag

FORCE = {"other_host": False}     # set by `cotrain --force`
_HELD: dict = {}                  # parent run id → open file descriptor holding its lock


class LivenessError(PipelineError):
    """The co-training is being run by another live process."""


def lock_file(run_id: str) -> Path:
    from pipeline.runtime.tracking import sqlite_path, tracking_uri
    db = sqlite_path(tracking_uri())
    if db is not None:
        base = db.parent
    else:
        from pipeline.runtime.home import project_home
        base = project_home()
    return base / ".mixsig-locks" / f"{run_id}.lock"


def _holder(path: Path, run) -> str:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        t = run.data.tags
        info = {"pid": t.get(tag("pid"), "?"), "host": t.get(tag("host"), "?"), "started": t.get(tag("started"), "?")}
    return f"process {info.get('pid')} on host {info.get('host')} (started {info.get('started')})"


def claim(client, run) -> None:
    """Take the co-training's lock for this process and record it on the run, or raise
    LivenessError if a live process holds it. Idempotent within one process."""
    import fcntl
    run_id = run.info.run_id
    if run_id in _HELD:
        return
    path = lock_file(run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LivenessError(f"co-training {run_id} is still running in {_holder(path, run)}; "
                            f"stop that process (or wait for it) before resuming") from None
    tags = run.data.tags
    here = socket.gethostname()
    if (run.info.status == "RUNNING" and tags.get(tag("host")) not in (None, here)
            and not FORCE["other_host"]):
        os.close(fd)
        raise LivenessError(f"co-training {run_id} is RUNNING in process {tags.get(tag('pid'))} on host "
                            f"{tags[tag('host')]} (started {tags.get(tag('started'), '?')}), which cannot be "
                            f"checked from {here}; if that process is gone, resume with --force")
    info = {"pid": os.getpid(), "host": here,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(info).encode())
    _HELD[run_id] = fd     # held until the process ends
    client.set_tag(run_id, tag("host"), info["host"])
    client.set_tag(run_id, tag("pid"), str(info["pid"]))
    client.set_tag(run_id, tag("started"), info["started"])


def release(run_id: str) -> None:
    """Give the lock back before the process ends (in-process use and tests)."""
    fd = _HELD.pop(run_id, None)
    if fd is not None:
        os.close(fd)
