"""fgssl: self-supervised pre-training for fine-grained recognition that looks at the object.

Subpackages follow the data flow: ``data`` -> ``saliency`` -> ``views`` -> ``methods`` / ``train`` -> ``eval`` / ``viz``.
"""

__version__ = "0.3.0"
