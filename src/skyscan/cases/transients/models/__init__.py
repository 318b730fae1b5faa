"""The transients case's own networks; importing this package registers them
(:func:`skyscan.models.register`)."""

from skyscan.cases.transients.models import deephits, vgg6  # noqa: F401  (registers them)
