"""skyscan: reproducible deep-learning searches of wide-field imaging surveys."""

__version__ = "0.1.0"
