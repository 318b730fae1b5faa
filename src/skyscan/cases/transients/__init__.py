"""Transients: real/bogus classification of ZTF alerts."""
