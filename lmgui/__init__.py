"""lmgui: a desktop model manager for LM Studio."""

__version__ = "0.1.0"
