"""The scheduler (ml/scheduler.py): params.yaml's cron expressions -> next run times, a manual trigger, a job
that fails or hangs without taking the scheduler down, and the crontab / docs that must say the same."""

from __future__ import annotations

import datetime as dt
import re
import sys
import time
import zoneinfo

import pytest
import yaml

from ml import config, scheduler
from ml.operations import policy as pol
from ml.operations import process

UTC = zoneinfo.ZoneInfo("UTC")


def write_params(tmp_path, **jobs):
    params = {"operations": {"state": str(tmp_path / "state"), "schedule": {"jobs": jobs}}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.parametrize(
    "field,names",
    [
        ("*", "*"),
        ("1", "mon"),
        ("0", "sun"),
        ("7", "sun"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("mon-fri", "mon,tue,wed,thu,fri"),
        ("sat,0", "sat,sun"),
        ("*/2", "tue,thu,sat,sun"),  # cron: 0,2,4,6
        ("1-7", "*"),
        ("5-7", "fri,sat,sun"),
    ],
)
def test_crontab_day_of_week_becomes_apscheduler_names(field, names):
    assert scheduler.apscheduler_day_of_week(field) == names


def test_next_runs_follow_the_crontab_meaning():
    schedule = pol.Schedule(
        "UTC",
        60,
        {
            "hourly": pol.Job("hourly", "5 * * * *", "true", 1),
            "monday": pol.Job("monday", "30 3 * * 1", "true", 1),
            "sunday": pol.Job("sunday", "0 0 * * 0", "true", 1),
        },
        "params.yaml",
    )
    now = dt.datetime(2024, 1, 2, 10, 20, tzinfo=UTC)  # a Tuesday
    runs = scheduler.next_runs(schedule, now)
    assert runs["hourly"] == dt.datetime(2024, 1, 2, 11, 5, tzinfo=UTC)
    assert runs["monday"] == dt.datetime(2024, 1, 8, 3, 30, tzinfo=UTC)
    assert runs["sunday"] == dt.datetime(2024, 1, 7, 0, 0, tzinfo=UTC)


def test_list_prints_every_params_job_with_its_next_run(capsys):
    assert scheduler.main(["--list"]) == 0
    printed = capsys.readouterr().out
    schedule = pol.load_schedule()
    assert {"monitor", "retrain", "rollback_check"} <= set(schedule.jobs)
    for name, job in schedule.jobs.items():
        line = next(line for line in printed.splitlines() if line.split()[:1] == [name])
        assert job.cron in line and job.command in line
        assert re.search(r"next \d{4}-\d\d-\d\d \d\d:\d\d UTC", line), line
    assert "python -m ml.monitoring.job" in printed and "python -m ml.retrain --if-needed" in printed


def test_a_bad_cron_expression_names_the_field(tmp_path, capsys):
    p = write_params(tmp_path, retrain={"cron": "30 3 * * funday", "command": "true", "timeout_minutes": 1})
    assert scheduler.main(["--list", "--params", str(p)]) == 2
    assert "operations.schedule.jobs.retrain.cron '30 3 * * funday'" in capsys.readouterr().err
    p = write_params(tmp_path, retrain={"cron": "30 3 * *", "command": "true", "timeout_minutes": 1})
    assert scheduler.main(["--list", "--params", str(p)]) == 2
    assert "is not 5 fields" in capsys.readouterr().err


def test_run_now_runs_the_job_as_a_subprocess_and_returns_its_exit_code(tmp_path, capsys):
    out = tmp_path / "ran.txt"
    ok = f"python -c \"import pathlib; pathlib.Path(r'{out}').write_text('ran')\""
    p = write_params(tmp_path, monitor={"cron": "5 * * * *", "command": ok, "timeout_minutes": 1},
                     retrain={"cron": "30 3 * * 1", "command": 'python -c "raise SystemExit(4)"', "timeout_minutes": 1})  # fmt: skip
    assert scheduler.main(["--run-now", "monitor", "--params", str(p)]) == 0 and out.read_text() == "ran"
    assert (
        scheduler.main(["--run-now", "retrain", "--params", str(p)]) == 4
    )  # a failure is a code, not a crash
    assert "[scheduler] retrain: exit 4" in capsys.readouterr().out
    assert scheduler.main(["--run-now", "nope", "--params", str(p)]) == 2
    assert "operations.schedule.jobs has no 'nope'" in capsys.readouterr().err


def test_a_job_past_its_time_limit_is_stopped():
    start = time.monotonic()
    code, _, error = process.run(
        [sys.executable, "-c", "import time; time.sleep(30)"], cwd=config.ROOT, timeout_s=0.3, grace_s=1
    )
    assert code == -1 and "stopped after" in error and time.monotonic() - start < 5


def test_the_scheduler_holds_each_job_once_without_overlap():
    schedule = pol.load_schedule()
    sched = scheduler.build(schedule, runner=lambda job: 0)
    jobs = {j.id: j for j in sched.get_jobs()}
    assert set(jobs) == set(schedule.jobs)
    assert all(j.max_instances == 1 and j.coalesce for j in jobs.values())


def test_crontab_and_docs_say_what_params_says(tmp_path):
    schedule = pol.load_schedule()
    tab = scheduler.crontab(schedule, tmp_path / "state")
    assert f"CRON_TZ={schedule.timezone}" in tab
    docs = (config.ROOT / "docs" / "operations.md").read_text()
    for name, job in schedule.jobs.items():
        line = next(line for line in tab.splitlines() if line.startswith(job.cron + " "))
        assert (
            sys.executable in line
            and f"{name}.log" in line
            and f"timeout --kill-after=30 {int(job.timeout_minutes * 60)}" in line
        )
        assert job.command.split(" ", 1)[1] in line  # `python` became this venv's interpreter
        assert f'schedule: "{job.cron}"' in docs, (
            f"docs/operations.md: the CronJob of {name} is not {job.cron!r}"
        )
        assert f"{job.cron}  cd " in docs, (
            f"docs/operations.md: the crontab line of {name} is not {job.cron!r}"
        )
