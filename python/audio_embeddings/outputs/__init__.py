"""Writers for the output contract: ``.npy``, ``.mat`` (v5 and v7.3) and ``.json``."""
