"""The ``archzoo`` command line: one module per command, each defining ``register(subparsers)``."""
