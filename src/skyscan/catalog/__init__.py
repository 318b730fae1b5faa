"""Catalogues: HATS import and output (:mod:`.hats_catalog`) and the known lenses that
searches are compared with (:mod:`.known`)."""
