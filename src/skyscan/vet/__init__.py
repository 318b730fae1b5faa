"""Vetting of candidates: plausibility of their estimated lens parameters."""
