"""The files lmgui ships inside its package: the icons and the desktop entry.

They live in the repository's top-level resources/ folder and install as the package
``lmgui.resources`` (pyproject.toml maps the folder), so an installed wheel, an sdist build and
an editable install all find them here, through ``importlib.resources``, never by a path relative
to a checkout. A missing file is a broken installation: it raises, it is never drawn over.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["RESOURCES", "resource_path"]

RESOURCES = "lmgui.resources"


def resource_path(*parts: str) -> Path:
    """The file ``resources/<parts>`` as a real path (Qt and the desktop open files by name)."""
    try:
        path = Path(str(files(RESOURCES).joinpath(*parts)))
    except ModuleNotFoundError:
        where = f"the package {RESOURCES} is missing"
    else:
        if path.is_file():
            return path
        where = f"not in {path.parent}"
    raise FileNotFoundError(
        f"lmgui is installed without its file {'/'.join(parts)} ({where}); reinstall lmgui, "
        "or in a checkout run pip install -e . again."
    )
