"""Strong-lens and galaxy simulation: profiles, PSF, surveys, populations, batched renderer."""
