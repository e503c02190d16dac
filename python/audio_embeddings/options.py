"""Which options a run takes besides the shared flags: the backends' and the shared stages', declared once.

Every backend declares its own :class:`~audio_embeddings.backends.base.Option` s (the registry's
:func:`~audio_embeddings.registry.option_table`); the shared stages after the model declare
theirs in their own module, as ``OPTIONS`` (:data:`STAGES`). The command line
(:mod:`audio_embeddings.cli`), the resume fingerprint (:mod:`audio_embeddings.app.run`) and the
MATLAB wording (:mod:`audio_embeddings.matlab`) all read them from here, so this module sits
below all three and imports none of them.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

from . import align, detections, device, features, plots
from .corpus import loader
from .outputs import hoplite
from .registry import option_table

#: Shared stages after the model that declare their own options: (``--help`` group, module with ``OPTIONS``).
STAGES = (("alignment to a brain-data time grid (EEG/MEG rate or fMRI TR)", "align"),
          ("feature spaces for encoding models (runs, PCA, z-scoring, bundle, BIDS)", "features"),
          ("perch-hoplite database (window models)", "outputs.hoplite"),
          ("quick-look pictures", "plots"),
          ("BirdNET detections as BirdNET-Analyzer 2.4 writes them (--model birdnet)", "detections"),
          ("model execution", "device"),
          ("audio input", "corpus.loader"))

#: The modules :data:`STAGES` names (imported above, so the import graph shows them).
STAGE_MODULES = {"align": align, "features": features, "outputs.hoplite": hoplite, "plots": plots,
                 "detections": detections, "device": device, "corpus.loader": loader}


def stage_options(module: str) -> tuple:
    """The ``OPTIONS`` of one shared stage (a module name of :data:`STAGES`)."""
    return tuple(STAGE_MODULES[module].OPTIONS)


def declared_stage_options() -> tuple:
    """The :class:`~audio_embeddings.backends.base.Option` s of the shared stages (:data:`STAGES`)."""
    return tuple(o for _, module in STAGES for o in stage_options(module))


def declared_options() -> list[tuple[str, Any]]:
    """(``--help`` group title, Option) of every backend and stage option, each flag once."""
    table = [(cls.option_group or cls.__name__, option) for cls, option in option_table()]
    for title, module in STAGES:
        table += [(title, o) for o in stage_options(module)]
    return table


__all__ = ["STAGES", "STAGE_MODULES", "declared_options", "declared_stage_options", "stage_options"]


def whole_number(*, minimum: int, what: str = "a whole number") -> Callable[[str], int]:
    """An ``argparse`` type for counts shared by every command line (``--batch-size``, ``--workers``...).

    Parameters
    ----------
    minimum : int
        The smallest value accepted (1 for sizes, 0 for counts that may be none).
    what : str
        What the value is, for the message (``"a 0-based row number"``).

    Returns
    -------
    callable
        ``str -> int``, raising ``argparse.ArgumentTypeError`` with one line.
    """
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        return value

    return parse
