"""Where jobs run: one :class:`Job` type, a local executor and a Ray executor.

Why: a run (every seed x track x method) and a tuning sweep (every trial) are lists of
independent jobs; what differs between one machine and a cluster is only where each job
runs. So the planners build the same :class:`Job` list for both, and the executors only
run it: :class:`LocalExecutor` in this process, one job after another (its messages
appear as they are said); :class:`RayExecutor` as one Ray task per job, all submitted at
once, each job's messages echoed in the local order when all are done. Both yield the
jobs' outcomes in job order, so everything after (records, tables, the chosen trial) is
the same code and the same numbers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

Echo = Callable[[str], Any]


@dataclass(frozen=True)
class Job:
    """One unit of work: ``fn(*shared, echo=echo, **options)``.

    A job whose ``fn`` is None only says its ``say`` lines (a run's ``seed s`` marker, said
    before that seed is planned); it runs nothing anywhere and its outcome is None.

    ``fn`` is a module-level function (a job pickles by reference); ``shared`` holds the
    large inputs many jobs read (a data set, a split, interaction matrices, side
    information), which the Ray executor puts in the object store once per distinct
    object; ``options`` the small keyword arguments. ``say``: lines echoed just before
    the job's own (``"seed 1"``). ``gpu``: whether the job may use the GPUs a Ray executor
    grants per task.
    """

    fn: Callable[..., Any] | None
    shared: tuple[Any, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    say: tuple[str, ...] = ()
    gpu: bool = True

    def run_with(self, shared: tuple[Any, ...], echo: Echo) -> Any:
        """The job on ``shared`` inputs handed in separately (a Ray worker's copies)."""
        return replace(self, shared=tuple(shared)).run(echo)

    def run(self, echo: Echo) -> Any:
        if self.fn is None:
            return None
        return self.fn(*self.shared, echo=echo, **self.options)


class Executor(Protocol):
    """What runs a job list: ``start`` (fails fast when it cannot), then ``map``."""

    name: str

    def start(self) -> None: ...

    def map(self, jobs: Iterable[Job], echo: Echo, *, desc: str = "jobs",
            progress: bool = True) -> Iterator[Any]: ...


class LocalExecutor:
    """Runs each job in this process, in order, as the job list is produced (so a planner
    that yields jobs seed by seed holds one seed's data at a time)."""

    name = "local"

    def start(self) -> None:
        return None

    def map(self, jobs: Iterable[Job], echo: Echo, *, desc: str = "jobs",
            progress: bool = True) -> Iterator[Any]:
        for job in jobs:
            for line in job.say:
                echo(line)
            yield job.run(echo)


def _run_job(cwd: str, job: Job, *shared: Any) -> tuple[Any, list[str]]:
    """A Ray task: the job, in the driver's working folder, its messages collected."""
    from benchmark.actor_map import in_driver_folder

    in_driver_folder(cwd)
    lines: list[str] = []
    return job.run_with(shared, lines.append), lines


class RayExecutor:
    """One Ray task per job on the cluster at ``address`` (None: a local Ray).

    Every job is submitted before any result is read; a task that fails is retried
    ``max_retries`` times (jobs write their outputs atomically, so a retry rewrites the
    same files). Workers draw no progress bars: a job's ``progress`` option is turned
    off, and one bar counts finished tasks instead.
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None,
                 cpus_per_task: float = 1.0, gpus_per_task: float = 0.0,
                 max_retries: int = 2):
        self.address, self.num_cpus = address, num_cpus
        self.cpus_per_task, self.gpus_per_task = cpus_per_task, gpus_per_task
        self.max_retries = max_retries

    def start(self) -> None:
        from benchmark.actor_map import ensure_ray

        ensure_ray(self.address, self.num_cpus)

    def map(self, jobs: Iterable[Job], echo: Echo, *, desc: str = "ray jobs",
            progress: bool = True) -> Iterator[Any]:
        import ray

        self.start()
        jobs = list(jobs)  # every job is planned (and its inputs built) before submission
        with_gpu = ray.remote(num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task,
                              max_retries=self.max_retries)(_run_job)
        cpu_only = ray.remote(num_cpus=self.cpus_per_task,
                              max_retries=self.max_retries)(_run_job)
        stored: dict[int, tuple[Any, Any]] = {}  # id -> (ref, object: kept alive)

        def put(obj: Any) -> Any:
            if id(obj) not in stored:
                stored[id(obj)] = (ray.put(obj), obj)
            return stored[id(obj)][0]

        cwd = os.getcwd()
        refs = []
        for job in jobs:
            if job.fn is None:
                continue
            options = ({**job.options, "progress": False} if "progress" in job.options
                       else job.options)
            task = with_gpu if job.gpu else cpu_only
            refs.append(task.remote(cwd, replace(job, shared=(), options=options),
                                    *[put(x) for x in job.shared]))
        outcomes = iter(_gather(refs, desc, progress))
        for job in jobs:
            outcome, lines = next(outcomes) if job.fn is not None else (None, [])
            for line in (*job.say, *lines):
                echo(line)
            yield outcome


def _gather(refs: list[Any], desc: str, progress: bool) -> list[Any]:
    """Results of ``refs`` in submission order, with a bar advancing as tasks finish."""
    import ray

    from benchmark.progress import progress_bar

    pending = list(refs)
    with progress_bar(total=len(refs), desc=desc, unit="task", enabled=progress) as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            bar.update(len(done))
    return ray.get(refs)


def executor_for(engine: str = "local", **options: Any) -> LocalExecutor | RayExecutor:
    """``engine`` (``local`` or ``ray``) as an executor; ``options`` go to RayExecutor."""
    if engine == "local":
        return LocalExecutor()
    if engine == "ray":
        return RayExecutor(**options)
    raise ValueError(f"unknown engine {engine!r}; choose local or ray")
