"""Placeholder so the package installs while modules are written."""
