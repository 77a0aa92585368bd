"""The harness: pretrained-weights cache, runner, sweep (claims, executors), tuning, MLflow tracking."""
