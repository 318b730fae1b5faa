"""The search: cutouts from survey tiles, scored per HEALPix partition with Dask."""
