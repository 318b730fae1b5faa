"""Catalogues: HATS import and output (:mod:`.hats_catalog`)."""
