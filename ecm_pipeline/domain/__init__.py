"""Pure domain logic over DataFrames: no Dagster, no I/O beyond reading packaged data files."""
