"""The decision service: policies, featurization, rank/reward, logging, evaluation."""
