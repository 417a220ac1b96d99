"""Progress bars for the library and the notebooks: ``from repro.progress import tqdm``.

Widget bars in Jupyter where ipywidgets is installed (``tqdm.auto``), text bars otherwise. ``tqdm.auto``
without ipywidgets falls back to text bars too, but prints a warning into every notebook (and report)
that imports it; choosing here keeps the reports clean.
"""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("ipywidgets") is not None:
    from tqdm.auto import tqdm
else:
    from tqdm.std import tqdm

__all__ = ["tqdm"]
