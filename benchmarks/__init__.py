"""Speed, memory and load benchmarks (not part of the test run): `python -m benchmarks`, `python -m benchmarks.load`."""
