"""Survey tiles: simulated multi-band FITS images with WCS, truth and input catalogs."""
