"""lmgui: a desktop model manager for LM Studio."""

# The one place the version is written: pyproject.toml reads it for the wheel and the sdist
# ([tool.setuptools.dynamic]), `lmgui --version` and the User-Agent print it.
__version__ = "0.1.0"
