"""Evaluation of lens classifiers: metrics, completeness grids, plots, reports."""
