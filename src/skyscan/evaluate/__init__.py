"""Evaluation of stamp classifiers for any science case: metrics, completeness grids, plots."""
