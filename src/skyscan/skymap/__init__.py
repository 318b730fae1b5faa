"""HEALPix indexing (NESTED everywhere) and the HATS-like partition layout."""
