"""Benchmarks (commands, not tests): `python -m benchmarks.extract --num_images=256`."""
