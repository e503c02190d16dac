"""Audio embeddings toolkit: one package behind the B1..B4 scripts, the MATLAB wrappers and a Python API.

    >>> import audio_embeddings as ae
    >>> model = ae.load_model("ge2e")                          # doctest: +SKIP
    >>> result = model.embed(samples, sample_rate_hz=22050)    # doctest: +SKIP

Importing this package is cheap: the names below are imported on first use (module
``__getattr__``), and no deep-learning framework is imported until a model is loaded.

Public names: :func:`load_model`, :class:`Model`, :class:`EmbeddingResult`,
:class:`CorpusResult` (from :mod:`audio_embeddings.api`); :func:`plot_result`,
:func:`plot_similarity`, :func:`plot_search` (from :mod:`audio_embeddings.plots`, need
matplotlib).
"""

__version__ = "0.1.0"

#: Public name -> submodule that defines it (imported on first access).
_LAZY = {
    "load_model": "api",
    "Model": "api",
    "EmbeddingResult": "api",
    "CorpusResult": "api",
    "plot_result": "plots",
    "plot_similarity": "plots",
    "plot_search": "plots",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
