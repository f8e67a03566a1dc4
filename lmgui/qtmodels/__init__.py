"""Qt item models over the state (QtCore and QtGui only)."""
