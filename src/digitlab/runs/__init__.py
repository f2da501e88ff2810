"""The run folder: its layout, writing and reading it, and finished runs as Python objects."""
