"""Commands registered on the ``dm`` app (filled in by its owner)."""
