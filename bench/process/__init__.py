"""The processing benchmark of issue 3: ``bench/process/run`` (see docs/benchmarks.md)."""
