"""Where the data files PlanFit ships live: `mappings/` (value sets, products, rates) and `profiles/`.

A source checkout or `pip install -e` reads them at the repository root, where they are edited; a wheel
carries a copy in `server/_data/`, put there by the build (`setup.py`)."""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_directory(name: str) -> Path:
    """The shipped copy when this is an installed wheel, else the repository's own directory."""
    shipped = _PACKAGE / "_data" / name
    return shipped if shipped.is_dir() else _PACKAGE.parent / name
