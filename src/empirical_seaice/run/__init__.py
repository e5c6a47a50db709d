"""Whole runs: training a model on data, and retrieving SIC and state with a trained model."""
