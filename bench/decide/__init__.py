"""The decision-service benchmark (issue 5): ``python -m bench.decide``."""
