"""Evaluation: datasets, evaluators, the runner, comparisons and the gate."""
