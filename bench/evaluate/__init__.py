"""Evaluation: weights resolution, feature extraction, metric math and result rows, in separate modules."""
