"""One module per ``petite`` sub-command; each exposes ``register(subparsers)``."""
