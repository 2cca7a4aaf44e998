"""``python -m minires ...`` runs the ``minires`` command (for when it is not on PATH)."""
from .cli import main

main()
