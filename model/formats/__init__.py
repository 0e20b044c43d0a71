"""Foreign checkpoint formats: reading files, telling formats apart, converting to our names."""
