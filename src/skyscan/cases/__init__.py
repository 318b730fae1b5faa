"""Science cases, one subpackage each; each defines ``CASE``, a :class:`skyscan.core.case.Case`.

``lenses``
    Galaxy-galaxy strong lenses (CMU DeepLens, Lanusse et al. 2018).

A case is found by its subpackage's name (:func:`skyscan.core.case.get_case`); adding one adds
a subpackage here and edits no shared module.
"""
