"""Benchmarks that print their figures (see BENCHMARKS.md)."""
