"""Vetting search candidates: lens parameters, cross-matches and the grading page."""
