"""pytest-mproc: run a pytest suite in parallel on all cores of one machine and across machines."""
