"""Reports read from the tracking store: aggregation, paired statistics, tables and plots."""
