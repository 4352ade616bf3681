"""Benchmarks: speed and memory measured on this machine, written to files (never asserted in tests)."""
