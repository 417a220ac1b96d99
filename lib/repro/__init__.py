"""repro: the library behind the reproduction workbook's notebooks.

Layers import downward only: data, nn -> train -> paper modules -> notebooks -> reports.
"""

from . import paths, profile, record

__all__ = ["paths", "profile", "record"]
__version__ = "0.1.0"
