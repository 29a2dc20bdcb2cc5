"""Studies: a fair comparison of loss weighting schemes, declared in a YAML file (``dm study``).

A study crosses noise rates (and, optionally, named conditions such as imbalance ratios) with
methods (losses). Every method with a hyperparameter is tuned by an Optuna study per (method,
condition) that trains up to the study's budget of different settings (a smaller grid whole),
on the trusted clean validation split, each trial averaged over its own tuning seeds; the chosen setting is then trained on the study's final
seeds and reported with the test accuracy at the end and at the evaluation chosen on
validation accuracy. Test data never take part in a choice.

Modules: ``spec`` (the study file), ``spaces`` (what each method tunes, and which setting is
simpler), ``tuner`` (the Optuna loop), ``runners`` (in this process, or queued in the store),
``results`` (a run's outcome as a row), ``claims`` (the paper's claims on the selected
variants), ``report`` (markdown and CSV). A paper preset of ``dm repro`` (``studio.repro``) is
a study with a fixed grid and no tuning: its runs go through the same runners, outcomes,
claims and report.
"""
