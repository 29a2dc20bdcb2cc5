"""The application layer: what composes the engine (``dm_core``), the workers (``workers``)
and the dashboard (``app``) into the ``dm`` command, the ``dm up`` supervisor and the
experiment studies. ``dm_core`` never imports this package; see ``docs/architecture.md``.
"""
