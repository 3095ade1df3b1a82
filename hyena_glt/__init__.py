"""hyena_glt: Hyena long-convolution models fed by BLT-style dynamic patches, for genomic sequences.

The library knows nothing of the command line: it raises the typed exceptions of
:mod:`hyena_glt.errors` and logs through the ``hyena_glt`` logger.
"""

__version__ = "0.1.0"
