"""sweeps: many runs as one experiment (`python -m src.run -m ...`, `hparams_search=optuna`).

Our Optuna sweeper's study (`study`: ask, launch, tell, prune; Hydra reaches it through
hydra_plugins/src_sweepers), what it optimises (`objectives`: the run's metric and its costs,
and their Pareto front), the jobs a sweep would launch, checked before any runs
(`preview`: `--dry-run`), and the sweep's summary table and plot, rewritten as each job ends
(`summary`: the `SweepSummary` callback, and `python -m src.summarize`). It imports
`src.config`, `src.tasks` (a metric's direction) and `src.outputs` (a job's folder, opened).
"""
