"""fgssl: self-supervised pre-training for fine-grained recognition that looks at the object.

Subpackages follow the data flow and import only downwards: ``data`` -> ``saliency`` -> ``views`` -> ``models`` ->
``methods`` -> ``train`` -> ``eval`` -> ``viz``; then ``runs`` (train or load a keyed run) and ``reports`` (evaluate runs,
tables), which ``study``, the notebooks, ``bench`` and ``reproduce`` call. The book's API page draws the layers.
"""

__version__ = "0.3.0"
