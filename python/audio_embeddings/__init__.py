"""Audio embeddings toolkit: one package behind the B1..B4 scripts and MATLAB wrappers.

Importing this package is cheap: no deep-learning framework is imported until a
backend is loaded.
"""

__version__ = "0.1.0"
