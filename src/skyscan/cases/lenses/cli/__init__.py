"""The lens case's own verbs (``LensCase.verbs``): ``skyscan make-tiles`` and ``skyscan inject``.

Each module has ``parser()`` and ``main(argv=None)`` like the shared verbs of
:mod:`skyscan.cli`, which lists them under ``lenses:`` in ``skyscan --help``.  Heavy imports
stay inside each verb's work.
"""
