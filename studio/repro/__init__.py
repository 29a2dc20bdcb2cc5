"""The paper's findings, as named experiment grids that anyone can rerun (``dm repro NAME``).

An experiment is a base config, a list of conditions (e.g. noise rates) and a list of
methods. A method is a loss with its published parameters (a DM method: the β published at
each noise rate); nothing is tuned here (the studies in ``studies/`` tune every method alike,
see ``studio.experiments``). Every (condition, method) is run for its seeds and reported as
mean ± std in the paper's Table 10 layout: best and final test accuracy, and training
accuracy against the corrupted and against the intact labels.

Two ways to run one, one report: ``run_local`` trains every run in this process;
``submit_plan`` queues them for the workers, ``read_group`` finds how many are done and
``group_results`` reads the finished runs back. Both turn each run into a ``RunResult`` with
the same function (``run_result``), so the report (``results_frame`` → ``write_report``) is
the same whichever way the runs were trained.

The claims checked on the results (stated honestly, whatever the outcome):

(a) under label noise DM with a larger emphasis mode beats CCE on final test accuracy;
(b) the best λ grows with the noise rate;
(c) on clean data λ = 0 is best among the DM variants;
(d) noisy examples keep a low ``p_i`` under DM while CCE memorises them.
"""

from studio.experiments.report import unstable_seeds
from studio.repro.plan import (
    GroupMismatch,
    GroupState,
    Plan,
    PlannedRun,
    RunResult,
    group_results,
    latest_group,
    plan,
    read_group,
    run_local,
    submit_plan,
)
from studio.repro.presets import EXPERIMENTS, Experiment, Method, get_experiment
from studio.repro.summary import reference_table, results_from_csv, summary_text, write_summary
from studio.repro.tables import (
    COLUMNS,
    check_claims,
    markdown_table,
    results_frame,
    summary_table,
    write_report,
)

__all__ = [
    "COLUMNS", "EXPERIMENTS", "Experiment", "GroupMismatch", "GroupState", "Method", "Plan",
    "PlannedRun", "RunResult", "check_claims", "get_experiment",
    "group_results", "latest_group", "markdown_table", "plan", "read_group", "reference_table",
    "results_frame", "results_from_csv", "run_local", "submit_plan", "summary_table",
    "summary_text", "unstable_seeds", "write_report", "write_summary",
]
