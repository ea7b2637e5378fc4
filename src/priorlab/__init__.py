"""priorlab: the methods of Babu (TTIC 2025) run, swept and served on Ray."""

__version__ = "0.1.0"
