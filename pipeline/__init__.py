"""Pipeline: stages, co-training, configs, MLflow tracking and the mixsig CLI."""
