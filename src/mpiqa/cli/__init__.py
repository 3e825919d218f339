"""The ``mpiqa`` command-line interface."""
