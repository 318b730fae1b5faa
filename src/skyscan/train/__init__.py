"""Training with PyTorch Lightning: one trainer (:mod:`.run`) and one module (:mod:`.module`)
for every task head (:mod:`.heads`: binary, multi-class, regression), and export for inference."""
