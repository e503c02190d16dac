#!/usr/bin/env python3
"""Align embeddings written earlier by this toolkit to a brain-data time grid (EEG/MEG rate or fMRI TR).

    python python/align.py FILE.mat (--tr S | --target-rate-hz R) [--align-start S0] [--align-duration D]
        [--align-method lanczos|mean|nearest] [--hrf spm|glover|none] [--delays 1,2,3,4]
        [--output OUT.mat] [--mat-version 5|7.3|auto]
    python python/align.py FILE.npy --time-axis AXIS.npy --window-s S --tr S [...]

Writes FILE_aligned.mat: FILE.mat's variables plus embeddings_aligned, time_axis_aligned, target_rate,
align_method, hrf and delays (see audio_embeddings.align). Errors: one line 'error: ...', exit status 2.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from audio_embeddings.align import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
