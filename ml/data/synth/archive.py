"""Synthetic archive activity: one row per source (file share, mailbox, tenant) and day, with its hidden truth.

What a source holds grows (`total_files`), its file-type mix and policy (`retention_days`,
`archive_frequency_per_day`) set how much is archived each day, and the calendar bends it: weekends are quiet,
the last business days of a month (more so of a quarter) run the month-end close, public holidays and the
Christmas week are near zero, summer is slower. A few sources change policy once (shorter retention with a
backlog surge, more frequent runs, or a migration that changes the mix). Savings come from dedup and
compression ratios that depend on the file type (`SAVINGS_RATIO`), so the mix drives them.
Pure functions of their arguments and a seed; `ml.data.synth.export` writes the landing files.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml.data.schemas import ARCHIVE_COLUMNS, ARCHIVE_SHARE_COLUMNS
from ml.data.synth.common import DEFAULT_START, SOURCE, random_stream

TYPES = tuple(
    c.removeprefix("share_") for c in ARCHIVE_SHARE_COLUMNS
)  # documents, images, video, email, other
DEDUP = {"documents": 0.25, "images": 0.05, "video": 0.02, "email": 0.35, "other": 0.15}
COMPRESSION = {"documents": 0.45, "images": 0.03, "video": 0.01, "email": 0.40, "other": 0.25}
# share of an archived GB of each type that dedup + compression remove: the generator's truth, never a feature
SAVINGS_RATIO = {t: 1.0 - (1.0 - DEDUP[t]) * (1.0 - COMPRESSION[t]) for t in TYPES}
FILE_SIZE_MB = {"documents": 0.6, "images": 3.5, "video": 180.0, "email": 0.12, "other": 2.0}
# source kind -> (mean volume mix over TYPES, weekend activity factor, files under management: log10 range)
SOURCE_KINDS = {
    "file_share": ((0.45, 0.25, 0.05, 0.05, 0.20), 0.25, (5.3, 7.0)),
    "mailbox": ((0.10, 0.05, 0.01, 0.80, 0.04), 0.60, (5.0, 6.5)),
    "tenant": ((0.35, 0.20, 0.10, 0.15, 0.20), 0.40, (5.5, 7.2)),
}
HOLIDAYS = ((1, 1), (5, 1), (12, 24), (12, 25), (12, 26), (12, 31))  # (month, day): near-zero activity
POLICY_KINDS = ("retention", "frequency", "migration")
RETENTION_CHOICES = (365, 730, 1095)
FREQUENCY_CHOICES = (0.5, 1.0, 1.0, 2.0, 4.0)  # archive runs per day; 0.5: every other day
CHANGE_COLUMNS = ["source_id", "at", "policy", "before", "after"]


def calendar_factor(dates: pd.DatetimeIndex, weekend: float) -> np.ndarray:
    """Activity multiplier of each day: weekends, month-end close (quarter-end more), holidays, summer."""
    dow = dates.dayofweek.to_numpy()
    factor = np.where(dow >= 5, weekend, 1.0)
    business = dow < 5
    month = dates.to_period("M")
    # rank of each business day from the month's end: 0 = last business day
    frame = pd.DataFrame({"m": month, "b": business}).iloc[::-1]
    from_end = frame.groupby("m")["b"].cumsum().iloc[::-1].to_numpy() - 1
    quarter_end = np.isin(dates.month, (3, 6, 9, 12))
    close = business & (from_end <= 1)
    factor = factor * np.where(close, np.where(quarter_end, 3.2, 2.4), 1.0)
    first_business = business & (frame.iloc[::-1].groupby("m")["b"].cumsum().to_numpy() == 1)
    factor = factor * np.where(first_business, 1.4, 1.0)
    md = list(zip(dates.month, dates.day, strict=True))
    holiday = np.array([d in HOLIDAYS for d in md])
    christmas_week = (dates.month == 12) & (dates.day >= 27) & (dates.day <= 30)
    factor = factor * np.where(holiday, 0.12, np.where(christmas_week, 0.45, 1.0))
    return factor * np.where(np.isin(dates.month, (7, 8)), 0.8, 1.0)


def _mix(rng: np.random.Generator, mean: tuple[float, ...], concentration: float) -> np.ndarray:
    return rng.dirichlet(np.asarray(mean) * concentration + 0.05)


def make_archive(
    seed: int = 0,
    n_sources: int = 40,
    days: int = 730,
    start: str = DEFAULT_START,
    policy_changes: int = 8,
    noise: float = 0.25,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(daily activity in ARCHIVE_COLUMNS, the policy changes injected) for `n_sources` sources over `days`."""
    if n_sources < 1 or days < 1:
        raise ValueError(f"n_sources and days must be >= 1, got {n_sources}, {days}")
    if not 0 <= policy_changes <= n_sources:
        raise ValueError(f"policy_changes must be in [0, n_sources], got {policy_changes}")
    dates = pd.date_range(pd.Timestamp(start).normalize(), periods=days, freq="D")
    t = np.arange(days)
    pick = random_stream(seed, "archive", "policy")
    changed = set(pick.choice(n_sources, size=policy_changes, replace=False).tolist())
    frames, changes = [], []
    kinds = list(SOURCE_KINDS)
    for i in range(n_sources):
        sid = f"{kinds[i % len(kinds)].replace('_', '-')}-{i + 1:02d}"
        kind = kinds[i % len(kinds)]
        rng = random_stream(seed, "archive", sid)
        mean_mix, weekend, (lo, hi) = SOURCE_KINDS[kind]
        mix = _mix(rng, mean_mix, 60.0)
        files0 = 10 ** rng.uniform(lo, hi)
        growth = rng.uniform(0.05, 0.5)
        retention = np.full(days, int(rng.choice(RETENTION_CHOICES)))
        frequency = np.full(days, float(rng.choice(FREQUENCY_CHOICES)))
        pace = rng.uniform(0.5, 1.5)  # files reaching retention age per day, relative to files / retention
        mixes = np.tile(mix, (days, 1))
        surge = np.zeros(days)
        volume = np.ones(days)
        if i in changed:
            at = int(rng.uniform(0.5, 0.85) * days)
            policy = POLICY_KINDS[int(rng.integers(len(POLICY_KINDS)))]
            if policy == "retention":
                before, after = int(retention[0]), int(max(180, retention[0] // 2))
                retention[at:] = after
                backlog = np.exp(
                    -(t[at:] - at) / 10.0
                )  # the files the shorter retention made due, in ~3 weeks
                surge[at:] = 3.0 * backlog
            elif policy == "frequency":
                before, after = float(frequency[0]), float(min(4.0 * frequency[0], 8.0))
                frequency[at:] = after
                volume[at:] = 1.3  # more runs keep up with more of what is due
            else:
                new = _mix(rng, SOURCE_KINDS["mailbox"][0], 60.0)
                mixes[at:] = 0.5 * mix + 0.5 * new
                volume[at:] = 1.6  # a migrated mailbox estate joins
                before, after = "mix", "mix+mailboxes"
            changes.append((sid, dates[at], policy, str(before), str(after)))
        total_files = files0 * np.exp(growth * t / 365.0) * np.exp(rng.normal(0, 0.002, days).cumsum())
        daily_mix = np.vstack([rng.dirichlet(m * 300.0 + 0.01) for m in mixes])
        sizes = np.array([FILE_SIZE_MB[k] for k in TYPES])
        avg_size = 1.0 / (mixes / sizes).sum(axis=1) * np.exp(rng.normal(0, 0.01, days))
        due = total_files * pace / retention * volume * (1.0 + surge)
        calendar = calendar_factor(dates, weekend)
        sigma = noise / np.sqrt(np.minimum(frequency, 4.0))
        files = due * calendar * np.exp(rng.normal(-0.5 * sigma**2, sigma))
        every = np.where(frequency < 1, np.round(1 / np.maximum(frequency, 1e-9)), 1).astype(int)
        files = _batch_runs(files, every, int(rng.integers(2)))
        files_archived = np.round(files).astype(np.int64)
        day_size = 1.0 / (daily_mix / sizes).sum(axis=1) * np.exp(rng.normal(0, 0.05, days))
        archived = files_archived * day_size / 1024.0
        ratio = (daily_mix * np.array([SAVINGS_RATIO[k] for k in TYPES])).sum(axis=1)
        saved = np.minimum(archived * ratio * np.exp(rng.normal(0, 0.04, days)), archived)
        shares = np.round(daily_mix, 4)
        shares[:, -1] = np.round(1.0 - shares[:, :-1].sum(axis=1), 4)  # rounded shares still sum to 1
        frame = pd.DataFrame(
            {
                "source_id": sid,
                "source_type": kind,
                "date": dates,
                "total_files": np.round(total_files).astype(np.int64),
                "avg_file_size_mb": np.round(avg_size, 4),
                **{c: np.clip(shares[:, j], 0.0, 1.0) for j, c in enumerate(ARCHIVE_SHARE_COLUMNS)},
                "archive_frequency_per_day": frequency,
                "retention_days": retention.astype(np.int64),
                "files_archived": files_archived,
                "archived_gb": np.round(archived, 4),
                "saved_gb": np.round(np.minimum(saved, archived), 4),
                "source": SOURCE,
            }
        )
        frame["saved_gb"] = np.minimum(frame["saved_gb"], frame["archived_gb"])
        frames.append(frame)
    activity = pd.concat(frames, ignore_index=True)[ARCHIVE_COLUMNS]
    log = pd.DataFrame(changes, columns=CHANGE_COLUMNS).sort_values("source_id", ignore_index=True)
    return activity, log


def _batch_runs(files: np.ndarray, every: int | np.ndarray, offset: int) -> np.ndarray:
    """Sources that run less than daily post what accumulated on their run days only (lumpier series)."""
    every = np.broadcast_to(np.asarray(every), files.shape)
    out = files.copy()
    carry = 0.0
    for d in range(len(files)):
        if every[d] <= 1:
            out[d] = files[d] + carry
            carry = 0.0
        elif (d + offset) % every[d] == 0:
            out[d] = files[d] + carry
            carry = 0.0
        else:
            carry += files[d]
            out[d] = 0.0
    return out


def archive_batches(
    activity: pd.DataFrame, *, every: str = "28D", resend_overlap: str = "1D"
) -> list[tuple[pd.Timestamp, pd.DataFrame]]:
    """Consecutive slices of days as an archive system would export them (as_of = the day after the slice),
    each re-sending the last `resend_overlap` of the previous one."""
    step, overlap = pd.Timedelta(every), pd.Timedelta(resend_overlap)
    if step < pd.Timedelta("1D"):
        raise ValueError(f"every must be at least one day, got {every!r}")
    if not pd.Timedelta(0) <= overlap < step:
        raise ValueError(f"resend_overlap must be in [0, every), got {resend_overlap!r}")
    if activity.empty:
        return []
    day = activity["date"]
    edge, end = day.min().normalize(), day.max()
    batches, first = [], True
    while edge <= end:
        nxt = edge + step
        lower = edge if first else edge - overlap
        part = activity.loc[(day >= lower) & (day < nxt)]
        if len(part):
            part = part.sort_values(["date", "source_id"], kind="stable").reset_index(drop=True)
            batches.append((part["date"].max() + pd.Timedelta("1D"), part))
            first = False
        edge = nxt
    return batches
