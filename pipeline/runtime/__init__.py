"""The machine the pipeline runs on: the project folder, the tracking store, liveness of runs,
interrupts (Ctrl-C, SIGTERM), a quiet start, resource limits, the Ray connection."""
