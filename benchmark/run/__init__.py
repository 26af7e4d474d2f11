"""Running the benchmark: plan jobs, run them on an executor, write records and tables.

* :mod:`benchmark.run.plan` -- what a run will do (data set, split, per-track data, the
  (track, method) list), checked before anything is fitted;
* :mod:`benchmark.run.jobs` -- one job: a ranking run (:func:`~benchmark.run.jobs.run_one`)
  or a pair-track run (:func:`~benchmark.run.jobs.run_pair_one`), each writing its records;
* :mod:`benchmark.run.executors` -- where jobs run (this process, or one Ray task each);
* :mod:`benchmark.run.benchmark` -- ``gembench run``: plan, execute, then the leaderboards.

The package imports nothing here, so that importing one part loads only that part.
"""
