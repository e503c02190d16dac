"""``python -m audio_embeddings <command> ...``: the ``audio-embeddings`` command (see :mod:`.commands`)."""

import sys

from .commands import main

if __name__ == "__main__":
    sys.exit(main())
