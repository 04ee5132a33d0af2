"""The ingest benchmark of issue 2; run it with ``bench/ingest/run`` (see docs/benchmarks.md)."""
