"""The Job list and its local executor: lazy, in order, messages where they are said."""

from __future__ import annotations

import pytest

from benchmark.run.executors import Job, LocalExecutor, RayExecutor, executor_for


def _add(a, b, *, echo, c=0):
    echo(f"adding {a}+{b}+{c}")
    return a + b + c


def test_local_executor_runs_each_job_as_it_is_planned():
    events: list[str] = []

    def planned():
        for i in range(3):
            events.append(f"planned {i}")
            yield Job(_add, (i, 10), {"c": 100}, say=(f"job {i}",))

    outcomes = []
    for outcome in LocalExecutor().map(planned(), events.append):
        outcomes.append(outcome)
        events.append(f"got {outcome}")
    assert outcomes == [110, 111, 112]
    # a job is planned only when the one before it has finished: one seed's data at a time
    assert events[:4] == ["planned 0", "job 0", "adding 0+10+100", "got 110"]
    assert events[-1] == "got 112" and len(events) == 12


def test_a_marker_job_only_speaks():
    lines: list[str] = []
    out = list(LocalExecutor().map([Job(None, say=("seed 3",)), Job(_add, (1, 2))],
                                   lines.append))
    assert out == [None, 3]
    assert lines == ["seed 3", "adding 1+2+0"]


def test_executor_for_names_the_engines():
    assert executor_for("local").name == "local"
    ray = executor_for("ray", address="auto", cpus_per_task=2.0)
    assert isinstance(ray, RayExecutor) and ray.cpus_per_task == 2.0 and ray.address == "auto"
    with pytest.raises(ValueError, match="unknown engine 'spark'; choose local or ray"):
        executor_for("spark")
