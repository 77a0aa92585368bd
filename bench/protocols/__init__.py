"""Evaluation protocols (linear probe, fine-tuning, reference rows), label budgets and metrics."""
