"""pytest entry point of pytest-mproc."""
