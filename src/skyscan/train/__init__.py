"""Training of lens classifiers with PyTorch Lightning, and export for inference."""
