"""Catalogues of the sky that searches are compared with (known lenses)."""
