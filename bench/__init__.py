"""Benchmark harness for pretraining strategies on joint Sentinel-1 + Sentinel-2 land cover."""

__version__ = "0.1.0"
__all__ = ["__version__"]
