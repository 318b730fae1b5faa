"""Training of stamp classifiers with PyTorch Lightning, and export for inference."""
