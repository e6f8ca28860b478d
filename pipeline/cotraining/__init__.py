"""The co-training: its plan of stages and rounds, the run that walks it (and resumes it), its
summary, and what its parent run shows in the MLflow UI."""
