"""One module per CLI command (see :mod:`bench.cli`)."""
