"""Data sources, each converting its input into the one schema (benchmark.schema)."""

from benchmark.data.store import Dataset, DatasetWriter, load_dataset

__all__ = ["Dataset", "DatasetWriter", "load_dataset"]
