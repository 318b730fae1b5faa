"""Survey tiles: multi-band FITS images with any WCS (reading, cutting, writing); a case that
simulates tiles (the lens case's :mod:`skyscan.cases.lenses.tiles`) writes them with
:mod:`.io`."""
