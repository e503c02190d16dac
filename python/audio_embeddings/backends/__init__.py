"""Model backends, one module per family; see :mod:`audio_embeddings.registry`."""
