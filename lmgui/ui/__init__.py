"""Widgets, dialogs and the main window: they read state and emit intents, never call HTTP."""
