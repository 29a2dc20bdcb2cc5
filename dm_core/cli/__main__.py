"""``python -m dm_core.cli`` runs the ``dm`` command (used by ``dm up`` to start workers)."""

from dm_core.cli import app

if __name__ == "__main__":
    app(prog_name="dm")
