"""The icons and the desktop entry, installed as the package ``lmgui.resources``.

pyproject.toml maps this folder into the package (``package-dir``), so the wheel, the sdist and an
editable install all carry it; lmgui finds the files with ``importlib.resources`` only
(lmgui/core/package_data.py). This file makes the folder an importable package there.
"""
