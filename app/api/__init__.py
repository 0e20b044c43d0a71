"""The HTTP layer: thin handlers over the inference front."""
