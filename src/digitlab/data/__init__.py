"""Digit data: the in-memory Dataset, its sources and file formats, splits, named datasets, pictures."""
