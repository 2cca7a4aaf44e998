"""``python -m minires ...`` runs the ``minires`` command (for when it is not on PATH)."""
from .tools.cli import main

main()
