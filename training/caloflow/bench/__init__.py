"""Benchmarks behind ``caloflow bench``: each module registers one subcommand and prints its figures."""
