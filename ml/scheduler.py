"""Runs the operations jobs (monitoring, retrain-if-needed, rollback check) on the cron expressions of
params.yaml `operations.schedule`, each as a subprocess so that one failing job never stops the scheduler.

    python -m ml.scheduler               # print the jobs and their next runs, then run them (make scheduler)
    python -m ml.scheduler --list        # print the jobs and their next runs, and exit
    python -m ml.scheduler --run-now NAME   # run one job now, in the foreground; its exit code is ours
    python -m ml.scheduler --crontab     # the same jobs as crontab lines (docs/operations.md)

The cron expressions are standard 5-field crontab (day of week 0 or 7 = Sunday); APScheduler 3 counts weekdays
from Monday, so the day-of-week field is translated to names before it gets there.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import signal
import sys
import zoneinfo
from pathlib import Path

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger

from ml import config
from ml.operations import process
from ml.operations.policy import Job, Schedule, load_schedule

DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # cron numbers 0..6 (7 is Sunday again)


def apscheduler_day_of_week(field: str) -> str:
    """A crontab day-of-week field (numbers or names, lists, ranges, steps) as APScheduler 3 names."""
    days: set[int] = set()
    for part in field.lower().split(","):
        base, _, step = part.partition("/")
        if base == "*":
            lo, hi = 0, 6
        elif "-" in base:
            first, last = base.split("-", 1)
            lo, hi = _day(first, field), _day(last, field)
            hi = 7 if hi == 0 and last != "0" else hi  # mon-sun, 1-7: through Sunday
        else:
            lo = _day(base, field)
            hi = 6 if step else lo
        if hi < lo or (step and not step.isdigit()) or step == "0":
            raise ValueError(f"day of week {field!r}: bad part {part!r}")
        days |= {d % 7 for d in range(lo, hi + 1, int(step or 1))}
    if days == set(range(7)):
        return "*"
    return ",".join(DAY_NAMES[d] for d in sorted(days, key=lambda d: (d + 6) % 7))  # Monday first


def _day(token: str, field: str) -> int:
    if token.isdigit() and int(token) <= 7:
        return int(token) % 7
    if token in DAY_NAMES:
        return DAY_NAMES.index(token)
    raise ValueError(f"day of week {field!r}: {token!r} is not 0-7 or a day name (sun..sat)")


def trigger(job: Job, timezone: str, source: str = "params.yaml") -> CronTrigger:
    """The APScheduler trigger of a job's crontab expression; a bad one names the params field."""
    minute, hour, day, month, dow = job.cron.split()
    try:
        return CronTrigger(minute=minute, hour=hour, day=day, month=month,
                           day_of_week=apscheduler_day_of_week(dow), timezone=zoneinfo.ZoneInfo(timezone))  # fmt: skip
    except ValueError as exc:
        raise ValueError(f"{source}: operations.schedule.jobs.{job.name}.cron {job.cron!r}: {exc}") from exc


def next_runs(schedule: Schedule, now: dt.datetime | None = None) -> dict[str, dt.datetime]:
    """Each job's next run time after `now` (default: now), in the schedule's time zone."""
    now = now or dt.datetime.now(zoneinfo.ZoneInfo(schedule.timezone))
    return {
        name: trigger(job, schedule.timezone, schedule.source).get_next_fire_time(None, now)
        for name, job in schedule.jobs.items()
    }


def job_table(schedule: Schedule, now: dt.datetime | None = None) -> str:
    """The jobs, their cron expressions, next run times and commands, as aligned text."""
    runs = next_runs(schedule, now)
    width = max((len(n) for n in schedule.jobs), default=4)
    lines = [f"operations jobs ({schedule.source}: operations.schedule, time zone {schedule.timezone}):"]
    for name, job in schedule.jobs.items():
        lines.append(f"  {name:<{width}}  {job.cron:<14}  next {runs[name]:%Y-%m-%d %H:%M %Z}  {job.command}")
    return "\n".join(lines)


def run_job(job: Job) -> int:
    """Run one job's command from the project root as a subprocess; a failure is printed, never raised."""
    argv = process.argv_for(job.command)
    print(f"[scheduler] {job.name}: start {shlex.join(argv)}", flush=True)
    code, seconds, error = process.run(argv, cwd=config.ROOT, timeout_s=job.timeout_minutes * 60)
    print(
        f"[scheduler] {job.name}: exit {code} after {seconds:.1f} s" + (f" ({error})" if error else ""),
        flush=True,
    )
    return code


def build(schedule: Schedule, runner=run_job) -> BlockingScheduler:
    """A scheduler with every job: one instance of a job at a time, a missed run done once if not too late."""
    sched = BlockingScheduler(timezone=zoneinfo.ZoneInfo(schedule.timezone))
    for name, job in schedule.jobs.items():
        sched.add_job(runner, trigger(job, schedule.timezone, schedule.source), args=[job], id=name, name=name,
                      max_instances=1, coalesce=True, misfire_grace_time=schedule.misfire_grace_seconds)  # fmt: skip
    return sched


def crontab(schedule: Schedule, state: str | Path, root: Path | None = None) -> str:
    """The same jobs as crontab lines: this checkout and its venv's python, a time limit (coreutils
    `timeout`), output appended to `<operations.state>/logs/<job>.log`."""
    root = Path(root or config.ROOT)
    logs = config.resolve(state) / "logs"
    lines = [
        "# opslab operations jobs: generated by `python -m ml.scheduler --crontab` from params.yaml",
        f"# operations.schedule ({schedule.source}); regenerate after changing it. CRON_TZ needs cronie or",
        "# systemd-cron; where cron ignores it the expressions are read in the machine's time zone.",
        f"CRON_TZ={schedule.timezone}",
    ]
    for name, job in schedule.jobs.items():
        argv = shlex.join(process.argv_for(job.command)).replace("%", "\\%")  # cron: a bare % is a newline
        limit = f"timeout --kill-after=30 {int(job.timeout_minutes * 60)}"
        lines.append(f"{job.cron}  cd {shlex.quote(str(root))} && mkdir -p {shlex.quote(str(logs))} && "
                     f"{limit} {argv} >> {shlex.quote(str(logs / (name + '.log')))} 2>&1")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ml.scheduler", description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument(
        "--list", action="store_true", help="print the jobs and their next run times, then exit"
    )
    mode.add_argument(
        "--run-now", metavar="NAME", help="run one job now (manual trigger) and exit with its code"
    )
    mode.add_argument("--crontab", action="store_true", help="print the jobs as crontab lines")
    ap.add_argument("--params", default=None, help="params file (default: the project's params.yaml)")
    args = ap.parse_args(argv)
    try:
        schedule = load_schedule(args.params)
        table = job_table(schedule)  # also checks every cron expression
        if args.crontab:
            state = (
                config.load_params(args.params or config.ROOT / "params.yaml").get("operations") or {}
            ).get("state")
            if not state:
                raise ValueError(f"{schedule.source}: operations.state is not set (where the job logs go)")
            print(crontab(schedule, state), end="")
            return 0
        if args.run_now and args.run_now not in schedule.jobs:
            raise ValueError(
                f"{schedule.source}: operations.schedule.jobs has no {args.run_now!r}; known: {list(schedule.jobs)}"
            )
    except ValueError as exc:
        print(f"scheduler: {exc}", file=sys.stderr)
        return 2
    if args.run_now:
        return run_job(schedule.jobs[args.run_now])
    print(table, flush=True)
    if args.list:
        return 0
    sched = build(schedule)
    signal.signal(signal.SIGTERM, lambda *_: sched.shutdown(wait=False))
    print("[scheduler] running; Ctrl-C stops it (a running job finishes on its own)", flush=True)
    try:
        sched.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
