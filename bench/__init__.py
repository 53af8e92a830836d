"""Benchmarks: run the trainers side by side and write raw results, tables and plots."""
