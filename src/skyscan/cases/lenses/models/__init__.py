"""The lenses case's own networks; importing this package registers them
(:func:`skyscan.models.register`)."""

from skyscan.cases.lenses.models import deeplens, lensparams  # noqa: F401  (registers them)
