"""``python -m studio.cli`` runs the ``dm`` command (used by ``dm up`` to start workers)."""

from studio.cli import app

if __name__ == "__main__":
    app(prog_name="dm")
