"""The committed results: the CPU study (``cpu_study.csv``, ``calibration.json``), the fidelity rows
(``fidelity_val.csv``), the choice of the default localiser on ``val`` (``localiser.json``) and the study's figures (``maps_*.png``, ``problem_and_fix.png``).

They are package data, so a wheel installed anywhere reads the same files as a clone: notebook 07 and the book's
pages show them from here (``fgssl_lib/results/``), and the study writes them back here when it runs again.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

RESULTS = Path(str(files(__name__)))
"""The folder of the committed results (inside the installed package)."""
