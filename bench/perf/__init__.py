"""``bench perf``: throughput stages (data, pretraining, training, backbone, CLI)."""
