"""The transient case's own verbs (``TransientCase.verbs``): ``skyscan make-alerts`` and
``skyscan score-alerts``.

Each module has ``parser()`` and ``main(argv=None)`` like the shared verbs of
:mod:`skyscan.cli`, which lists them under ``transients:`` in ``skyscan --help``.  Heavy
imports stay inside each verb's work.
"""
