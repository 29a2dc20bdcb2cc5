"""The paper's findings, as named experiment grids that anyone can rerun (``dm repro NAME``).

An experiment is a base config, a list of conditions (e.g. noise rates) and a list of
methods. A method is a loss with its published parameters (a DM method: the β published at
each noise rate); nothing is tuned here (the studies in ``studies/`` tune every method alike,
see ``studio.experiments``). A preset is a study with a fixed grid and no tuning: ``plan``
expands it into the studies' ``PlannedRun``s, which train through the studies' runners
(``run_here``; or ``submit_plan``, then ``read_group`` and ``group_outcomes``) into
``RunOutcome``s, and the studies' report writer (``write_preset_report``) and claims
(``studio.experiments.claims``) turn them into the report, in the paper's Table 10 layout
with the published numbers beside each row.

Modules: ``presets`` (the experiments, ``get_experiment``; what the dashboard's Launch page
reads), ``plan`` (a preset's runs, here or queued, and their outcomes) and ``summary`` (the
reproduction page). This package imports none of them: importing ``studio.repro.presets`` must
not load the runners, Optuna and Jinja that ``plan`` and the reports need.
"""
