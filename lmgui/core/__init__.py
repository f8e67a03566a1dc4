"""Qt-free domain logic shared by the command line and the GUI."""
