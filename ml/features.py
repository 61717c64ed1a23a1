"""Transforms shared by training and serving: sensor window features, incident features, ticket-text cleaning.

Sklearn transformers and pure functions, frames in and frames (or matrices) out, never changing their input.
Saved models carry these classes, so the notebooks, batch scoring and the service featurise the same way.
Sensor features are causal (a row at time t reads only readings up to t); incident features read open-time
fields only. The gold tables are built from them by `ml.data.gold`.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import OneHotEncoder
from threadpoolctl import threadpool_limits

from ml.data import schemas


# --- sensors ----------------------------------------------------------------------------------
def infer_freq(timestamps: pd.Series) -> pd.Timedelta:
    """A series' sampling step: the most common gap between consecutive readings."""
    gaps = timestamps.sort_values().diff().dropna()
    if gaps.empty:
        return pd.Timedelta("1h")
    return gaps.mode().iloc[0]


SENSOR_FEATURES = [
    "dev_season",
    "diff_1",
    "z_short",
    "z_long",
    "spread_ratio",
    "flat_run",
    "drift",
    "hour_sin",
    "hour_cos",
    "dow_sin",
    "dow_cos",
]


class SensorWindowFeatures(TransformerMixin, BaseEstimator):
    """Raw readings (sensor_id, timestamp, value) -> causal window features, normalised per sensor.

    `fit` learns, on training readings only, each sensor's robust level and scale and its typical
    hour-of-day profile (weekdays and weekends apart). `transform` computes, for every reading, features that use only that sensor's
    readings up to and including it (rolling windows count readings, so any sampling step works), and
    returns them in the input's row order. A sensor unseen in training raises a ValueError naming it.
    """

    def __init__(
        self, short_window: int = 6, long_window: int = 24, baseline_window: int = 168, max_flat_run: int = 48
    ):
        self.short_window = short_window
        self.long_window = long_window
        self.baseline_window = baseline_window
        self.max_flat_run = max_flat_run

    def fit(self, X: pd.DataFrame, y=None):
        frame = _readings_frame(X)
        self.sensors_ = {}
        for sid, g in frame.groupby("sensor_id", sort=True):
            v = g["value"].dropna()
            if len(v) < 2:
                raise ValueError(f"sensor {sid!r}: needs at least 2 training readings, got {len(v)}")
            centre = float(v.median())
            scale = float(v.quantile(0.75) - v.quantile(0.25)) or float(v.std()) or 1.0
            norm = (g["value"] - centre) / scale
            how = _season_bin(g["timestamp"])
            profile = norm.groupby(how).median().reindex(range(48))
            by_hour = norm.groupby(how % 24).median().reindex(range(24))
            profile = profile.fillna(pd.Series(np.tile(by_hour.to_numpy(), 2))).fillna(0.0)
            resid = (norm - profile.to_numpy()[how]).dropna()
            diffs = norm.dropna().diff().abs()
            self.sensors_[sid] = {
                "centre": centre,
                "scale": scale,
                "profile": [float(x) for x in profile],
                "resid_std": float(resid.std()) if len(resid) > 2 and resid.std() > 1e-9 else 1.0,
                "diff_scale": float(diffs.median()) if len(diffs) and diffs.median() > 1e-9 else 1.0,
                "lo": float(v.min()),  # the range seen in training (the detector's novelty rule)
                "hi": float(v.max()),
            }
        self.feature_names_out_ = list(SENSOR_FEATURES)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        frame = _readings_frame(X)
        unknown = sorted(set(frame["sensor_id"]) - set(self.sensors_))
        if unknown:
            raise ValueError(
                f"sensor_id {unknown[0]!r} was not in the training data (known: {len(self.sensors_)})"
            )
        order = frame.sort_values(["sensor_id", "timestamp"], kind="stable")
        parts = [self._one_sensor(g, self.sensors_[sid]) for sid, g in order.groupby("sensor_id", sort=False)]
        feats = pd.concat(parts) if parts else pd.DataFrame(columns=SENSOR_FEATURES, dtype=float)
        return feats.reindex(frame.index)[SENSOR_FEATURES]

    def get_feature_names_out(self, input_features=None):
        return np.asarray(SENSOR_FEATURES, dtype=object)

    def _one_sensor(self, g: pd.DataFrame, st: dict) -> pd.DataFrame:
        v = ((g["value"] - st["centre"]) / st["scale"]).ffill().fillna(0.0)
        how = _season_bin(g["timestamp"])
        resid = v - np.asarray(st["profile"])[how]  # seasonally adjusted reading
        # the recent normal: median residual over the past baseline window (trend and slow change absorbed)
        base = resid.shift(1).rolling(self.baseline_window, min_periods=2).median().fillna(0.0)
        past = v.shift(1)
        out = {
            "dev_season": (resid - base) / st["resid_std"],
            "diff_1": (v - past).fillna(0.0) / st["diff_scale"],
        }
        for name, w in (("z_short", self.short_window), ("z_long", self.long_window)):
            mean = past.rolling(w, min_periods=2).mean()
            std = past.rolling(w, min_periods=2).std()
            floor = 0.25 * st["resid_std"]  # a near-constant past window must not blow z up to infinity
            out[name] = ((v - mean) / np.maximum(std, floor)).fillna(0.0)
        spread = resid.rolling(self.short_window, min_periods=2).std()
        out["spread_ratio"] = (spread / st["resid_std"]).fillna(1.0)
        same = v.diff().abs() < 1e-9
        run = same.groupby((~same).cumsum()).cumsum()
        out["flat_run"] = run.clip(upper=self.max_flat_run).astype(float)
        # drift: the last long window's mean residual against the baseline before that window began
        before = base.shift(self.long_window).fillna(base)
        out["drift"] = (resid.rolling(self.long_window, min_periods=1).mean() - before) / st["resid_std"]
        ts = pd.DatetimeIndex(g["timestamp"])
        hour = ts.hour.to_numpy() + ts.minute.to_numpy() / 60.0
        dow = ts.dayofweek.to_numpy()
        out["hour_sin"], out["hour_cos"] = np.sin(2 * np.pi * hour / 24), np.cos(2 * np.pi * hour / 24)
        out["dow_sin"], out["dow_cos"] = np.sin(2 * np.pi * dow / 7), np.cos(2 * np.pi * dow / 7)
        # one frame at the end (not column by column): a request of a few readings is dominated by overhead
        return pd.DataFrame({k: np.asarray(c, dtype=float) for k, c in out.items()}, index=g.index)


def _readings_frame(X: pd.DataFrame) -> pd.DataFrame:
    """Check and type the raw reading columns a sensor model reads (errors name the column)."""
    missing = [c for c in ("sensor_id", "timestamp", "value") if c not in X.columns]
    if missing:
        raise ValueError(f"readings need columns sensor_id, timestamp, value; missing {missing}")
    frame = X[["sensor_id", "timestamp", "value"]].copy()
    frame["sensor_id"] = frame["sensor_id"].astype(str)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    frame["value"] = pd.to_numeric(frame["value"], errors="raise").astype(float)
    return frame


def _season_bin(ts: pd.Series) -> np.ndarray:
    """Hour of day, split weekday (0-23) / weekend (24-47): enough data per bin from a few weeks of training."""
    return ((ts.dt.dayofweek >= 5) * 24 + ts.dt.hour).to_numpy()


# --- ticket text ------------------------------------------------------------------------------
TEXT_COLUMNS = ("short_description", "description")
MISSING = "(missing)"  # the category of a missing value, wherever one is encoded
MAX_CHARS = 2000  # longer text adds nothing a router needs and only costs time

_URL = re.compile(r"(?:https?://|ftp://|www\.)\S+")
# possessive runs starting only where a run starts: linear time even on a megabyte of "xxxx…"
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]++@[\w-]++(?:\.[\w-]++)+")
_TICKET = re.compile(r"\b(?:inc|chg|prb|ritm|req|task|sctask)\d{4,}\b")
_LONG_DIGITS = re.compile(r"\d{6,}")  # phone numbers, ids; short codes (ORA-01653, 0x80070005) stay
_SPACE = re.compile(r"\s+")


def clean_text(value, max_chars: int = MAX_CHARS) -> str:
    """One free-text field -> normalised text: NFKC, lowercase, URLs/emails/ticket numbers/long digit runs
    replaced by tokens, whitespace collapsed, at most `max_chars`; "" for None/NaN; deterministic."""
    if not isinstance(value, str):
        if value is None or (np.ndim(value) == 0 and bool(pd.isna(value))):
            return ""
        value = str(value)
    text = value
    text = text[: 4 * max_chars]  # bound the work on huge inputs before any regex runs
    text = unicodedata.normalize("NFKC", text).lower()
    text = _URL.sub(" urltoken ", text)
    text = _EMAIL.sub(" emailtoken ", text)
    text = _TICKET.sub(" tickettoken ", text)
    text = _LONG_DIGITS.sub(" numtoken ", text)
    text = _SPACE.sub(" ", text).strip()
    return text[:max_chars].rstrip()


def clean_column(values, max_chars: int = MAX_CHARS) -> list[str]:
    """`clean_text` over a column (any iterable); missing values become ""."""
    return [clean_text(v, max_chars) for v in values]


def incident_text(incidents: pd.DataFrame) -> pd.Series:
    """Ticket text for NLP: short description then description, empty when the source has none."""
    short = incidents["short_description"].fillna("").astype(str)
    desc = incidents["description"].fillna("").astype(str)
    return (short + ". " + desc).str.strip(". ").rename("text")


# --- incidents --------------------------------------------------------------------------------
GROUP_LOAD = "group_load_24h"
CATEGORICAL_COLUMNS = ("contact_type", "category", "subcategory", "cmdb_ci", "assignment_group", "location")
NUMERIC_COLUMNS = ("impact", "urgency", "priority", "sla_target_hours")
# Every raw column IncidentFeatures reads with its defaults (group_load_24h is optional on top).
INPUT_COLUMNS = ("opened_at", *NUMERIC_COLUMNS, *CATEGORICAL_COLUMNS, *TEXT_COLUMNS)
ALLOWED_COLUMNS = frozenset(schemas.OPEN_TIME_COLUMNS) | {GROUP_LOAD}
CALENDAR_FEATURES = (
    "open_hour",
    "hour_sin",
    "hour_cos",
    "open_weekday",
    "is_weekend",
    "is_night",
    "hours_to_business",
)


def group_load(opened_at: pd.Series, group: pd.Series, window: str = "24h") -> pd.Series:
    """Incidents opened for the same group in the `window` strictly before each one (known at open time)."""
    out = pd.Series(0, index=opened_at.index, dtype=int, name=GROUP_LOAD)
    span = pd.Timedelta(window)
    for _, idx in opened_at.groupby(group.fillna("?").to_numpy()).groups.items():
        times = np.sort(opened_at.loc[idx].to_numpy())
        own = opened_at.loc[idx].to_numpy()
        out.loc[idx] = np.searchsorted(times, own, "left") - np.searchsorted(times, own - span, "left")
    return out


def add_group_load(incidents: pd.DataFrame, window: str = "24h") -> pd.DataFrame:
    """A copy with `group_load_24h` (`group_load` per assignment group) unless present; pass the whole history."""
    if GROUP_LOAD in incidents.columns:
        return incidents.copy()
    load = group_load(pd.to_datetime(incidents["opened_at"]), incidents["assignment_group"], window)
    return incidents.assign(**{GROUP_LOAD: load.to_numpy()})


def limit_threads(n_threads: int | None):
    """`threadpool_limits(n_threads)`, or nothing when None (the caller's process is limited already:
    probing the thread pools costs ~3 ms, more than scoring one ticket)."""
    if n_threads is None:
        return contextlib.nullcontext()
    return threadpool_limits(n_threads)


def hours_to_business(opened_at, start: int = 8, end: int = 18) -> np.ndarray:
    """Hours from opening until the next business hour (Mon-Fri start..end); 0 inside business hours.

    Counted on the wall clock (a tz-aware input's local time; a DST change in between is not counted)."""
    return business_wait(_naive_ns(opened_at), start, end)


def business_wait(when: np.ndarray, start: int, end: int) -> np.ndarray:
    """`hours_to_business` on naive datetime64[ns] values, in numpy only (the serving fast path's too)."""
    day = when.astype("datetime64[D]")
    hour = (when - day) / np.timedelta64(1, "h")
    dow = _weekday(when)
    weekday = dow < 5
    inside = weekday & (hour >= start) & (hour < end)
    before = weekday & (hour < start)
    days_ahead = np.select([before, dow == 4, dow == 5], [0, 3, 2], default=1)
    nxt = day + days_ahead.astype("timedelta64[D]") + np.timedelta64(start, "h")
    out = np.where(inside, 0.0, (nxt - when) / np.timedelta64(1, "h"))
    return np.where(np.isnat(when), np.nan, out)


class IncidentFeatures(TransformerMixin, BaseEstimator):
    """Open-time incident fields -> dense float matrix: calendar, levels, SLA, categories, group load, text.

    - calendar from `opened_at`: hour (raw, sin, cos), weekday, weekend, night (before 07:00 or from
      20:00), hours until the next business hour (Mon-Fri `business_hours`); no month or year, so the
      model cannot key on the period it was trained in;
    - impact, urgency, priority and log(sla_target_hours);
    - one-hot of `categorical_columns`; categories seen fewer than `min_frequency` times in training share
      an "infrequent" column, where unseen ones go too (all zeros if a column has no rare category);
      missing values are their own category;
    - `routing_share` (target-free): the training share of the ticket's subcategory that went to its
      assignment group, smoothed toward the group's overall share; low for unusual routing;
    - `group_load_24h`: incidents opened for the same group in the previous 24 h. It needs the other
      incidents, so it is an optional input column: batch scoring computes it with `add_group_load`
      over the whole silver table, and the service may pass it. Training needs it; at transform time an
      absent column (or a missing value) is filled with the training median, i.e. "a typical load";
    - with `use_text`: log length in characters and words of `incident_text`, and its
      TF-IDF (`text_max_features` terms), reduced to `text_components` SVD dimensions (None = keep the
      TF-IDF columns). Without it the text columns are not read (the UCI log has no text).
    """

    def __init__(
        self,
        categorical_columns=CATEGORICAL_COLUMNS,
        min_frequency=20,
        routing_share=True,
        use_group_load=True,
        use_text=True,
        text_max_features=2000,
        text_components=10,
        business_hours=(8, 18),
        random_state=0,
    ):
        self.categorical_columns = categorical_columns
        self.min_frequency = min_frequency
        self.routing_share = routing_share
        self.use_group_load = use_group_load
        self.use_text = use_text
        self.text_max_features = text_max_features
        self.text_components = text_components
        self.business_hours = business_hours
        self.random_state = random_state

    # -- the columns this instance reads ------------------------------------------------------
    def input_columns(self) -> list[str]:
        """Raw columns this configuration reads; asking for one not known at open time raises."""
        cats = list(self.categorical_columns)
        bad = [c for c in cats if c not in ALLOWED_COLUMNS]
        if bad:
            outcome = [c for c in bad if c in schemas.OUTCOME_COLUMNS]
            what = "an outcome column (not known at open time)" if outcome else "not an open-time column"
            raise ValueError(
                f"categorical_columns: {bad[0]!r} is {what}; allowed: {sorted(schemas.OPEN_TIME_COLUMNS)}"
            )
        cols = ["opened_at", *NUMERIC_COLUMNS, *cats]
        if self.use_text:
            cols += list(TEXT_COLUMNS)
        return list(dict.fromkeys(cols))

    def _select(self, X: pd.DataFrame, *, fitting: bool) -> pd.DataFrame:
        """Copy only the columns read (errors name the missing ones); nothing else of X is touched."""
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"IncidentFeatures needs a DataFrame of incident records, got {type(X).__name__}")
        cols = self.input_columns()
        missing = [c for c in cols if c not in X.columns]
        if missing:
            raise ValueError(f"incident records lack column(s) {missing}")
        if fitting and self.use_group_load and GROUP_LOAD not in X.columns:
            raise ValueError(
                f"training records need {GROUP_LOAD!r}: compute it over the full history with "
                "ml.features.add_group_load (or set use_group_load=False)"
            )
        take = cols + ([GROUP_LOAD] if self.use_group_load and GROUP_LOAD in X.columns else [])
        return X[take].copy()

    # -- fit / transform ---------------------------------------------------------------------------
    def fit(self, X: pd.DataFrame, y=None):
        frame = self._select(X, fitting=True)
        cats = self._categoricals(frame)
        self.encoder_ = OneHotEncoder(
            handle_unknown="infrequent_if_exist",
            min_frequency=self.min_frequency,
            sparse_output=False,
            dtype=np.float64,
        ).fit(cats)
        if self._has_routing():
            sub, grp = cats["subcategory"], cats["assignment_group"]
            self.group_share_ = {str(k): float(v) for k, v in grp.value_counts(normalize=True).items()}
            self.subcategory_count_ = {str(k): int(v) for k, v in sub.value_counts().items()}
            pairs = (sub + "\x1f" + grp).value_counts()
            self.pair_count_ = {str(k): int(v) for k, v in pairs.items()}
        if self.use_text:
            text = incident_text(frame)
            self.vectorizer_ = TfidfVectorizer(
                max_features=self.text_max_features,
                min_df=min(3, max(1, len(text) // 100)),
                sublinear_tf=True,
                ngram_range=(1, 2),
                dtype=np.float64,
            )
            try:
                tfidf = self.vectorizer_.fit_transform(text)
            except ValueError as exc:  # every text empty: e.g. the UCI event log
                raise ValueError(f"use_text=True but the records carry no usable text ({exc})") from exc
            self.vectorizer_.stop_words_ = None  # the pruned-terms set: only for introspection, and large
            self.svd_ = None
            if self.text_components:
                k = min(int(self.text_components), tfidf.shape[1] - 1)
                if k >= 1:
                    self.svd_ = TruncatedSVD(n_components=k, random_state=self.random_state).fit(tfidf)
        block, names = self._numeric_block(frame, incident_text(frame) if self.use_text else None)
        numeric = pd.DataFrame(block, columns=names, index=frame.index)
        self.medians_ = {c: float(v) if pd.notna(v) else 0.0 for c, v in numeric.median().items()}
        self.feature_names_out_ = self._names()
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        frame = self._select(X, fitting=False)
        text = incident_text(frame) if self.use_text else None
        numeric, _ = self._numeric_block(frame, text)
        missing = np.isnan(numeric)
        if missing.any():
            fill = np.array([self.medians_[c] for c in self._numeric_names()], dtype=np.float64)
            numeric = np.where(missing, fill, numeric)
        cats = self._categoricals(frame)
        blocks = [numeric, self.encoder_.transform(cats)]
        if self._has_routing():
            blocks.append(self._routing(cats)[:, None])
        if self.use_text:
            tfidf = self.vectorizer_.transform(text)
            blocks.append(self.svd_.transform(tfidf) if self.svd_ is not None else tfidf.toarray())
        return np.hstack(blocks)

    def get_feature_names_out(self, input_features=None):
        return np.asarray(self.feature_names_out_, dtype=object)

    # -- pieces --------------------------------------------------------------------------------------
    def _has_routing(self) -> bool:
        return bool(self.routing_share) and {"subcategory", "assignment_group"} <= set(
            self.categorical_columns
        )

    def _categoricals(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The categorical columns as strings, missing values as the `MISSING` category."""
        out = {}
        for c in self.categorical_columns:
            values = frame[c].to_numpy(dtype=object)
            out[c] = np.where(pd.isna(values), MISSING, values).astype(str).astype(object)
        return pd.DataFrame(out, index=frame.index)

    def _numeric_names(self) -> list[str]:
        names = [*CALENDAR_FEATURES, "impact", "urgency", "priority", "log_sla_hours"]
        if self.use_group_load:
            names.append(GROUP_LOAD)
        if self.use_text:
            names += ["log_text_chars", "log_text_words"]
        return names

    def _numeric_block(self, frame: pd.DataFrame, text: pd.Series | None) -> tuple[np.ndarray, list[str]]:
        """The numeric features (missing values as NaN) as one float matrix, columns `_numeric_names()`.

        Built column by column in numpy (not by assigning into a DataFrame): one ticket at serving time
        costs tens of microseconds here instead of milliseconds.
        """
        cols = calendar_columns(_naive_ns(frame["opened_at"]), self.business_hours)
        cols += [_floats(frame[c]) for c in ("impact", "urgency", "priority")]
        with np.errstate(divide="ignore", invalid="ignore"):
            cols.append(np.log(_floats(frame["sla_target_hours"])))
        if self.use_group_load:
            cols.append(_floats(frame[GROUP_LOAD]) if GROUP_LOAD in frame else np.full(len(frame), np.nan))
        if self.use_text:
            cols.append(np.log1p(text.str.len().to_numpy(dtype=float)))
            cols.append(np.log1p(np.array([len(s.split()) for s in text], dtype=float)))
        return np.column_stack(cols).astype(np.float64, copy=False), self._numeric_names()

    def _routing(self, cats: pd.DataFrame, smoothing: float = 5.0) -> np.ndarray:
        sub, grp = cats["subcategory"].to_numpy(), cats["assignment_group"].to_numpy()
        prior = np.array([self.group_share_.get(g, 0.0) for g in grp])
        n_sub = np.array([self.subcategory_count_.get(s, 0) for s in sub], dtype=float)
        n_pair = np.array([self.pair_count_.get(f"{s}\x1f{g}", 0) for s, g in zip(sub, grp, strict=True)])
        return (n_pair + smoothing * prior) / (n_sub + smoothing)

    def _names(self) -> list[str]:
        names = self._numeric_names()
        names += [str(n) for n in self.encoder_.get_feature_names_out(list(self.categorical_columns))]
        if self._has_routing():
            names.append("routing_share")
        if self.use_text:
            if self.svd_ is not None:
                names += [f"text_svd_{i}" for i in range(self.svd_.n_components)]
            else:
                names += [f"tfidf_{w}" for w in self.vectorizer_.get_feature_names_out()]
        return names


def _floats(values: pd.Series) -> np.ndarray:
    """Any numeric-ish column (Int64 with NA, strings of numbers, floats) as float64 with NaN for missing."""
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _naive_ns(opened_at) -> np.ndarray:
    """Timestamps as naive datetime64[ns] wall-clock values (a tz-aware column keeps its local time)."""
    t = pd.DatetimeIndex(pd.to_datetime(opened_at))
    if t.tz is not None:
        t = t.tz_localize(None)
    return t.to_numpy(dtype="datetime64[ns]")


def calendar_columns(when: np.ndarray, business_hours: tuple[int, int]) -> list[np.ndarray]:
    """The CALENDAR_FEATURES of datetime64[ns] open times (NaT rows: NaN), for training and the fast path."""
    with np.errstate(invalid="ignore"):  # NaT rows: NaN below
        minutes = (when - when.astype("datetime64[D]")) // np.timedelta64(1, "m")
    minutes = np.where(np.isnat(when), np.nan, minutes)
    whole, minute = minutes // 60, minutes % 60
    hour = whole + minute / 60.0
    weekday = _weekday(when)
    cycle = [np.sin(2 * np.pi * hour / 24), np.cos(2 * np.pi * hour / 24)]
    flags = [(weekday >= 5).astype(float), ((whole < 7) | (whole >= 20)).astype(float)]  # weekend, night
    return [hour, *cycle, weekday, *flags, business_wait(when, *business_hours)]


def _weekday(when: np.ndarray) -> np.ndarray:
    """Monday=0 .. Sunday=6 as float (NaN for NaT); 1970-01-01 was a Thursday."""
    days = when.astype("datetime64[D]").astype(np.int64)
    return np.where(np.isnat(when), np.nan, (days + 3) % 7).astype(float)


# --- archive ----------------------------------------------------------------------------------
ARCHIVE_FLOWS = ("archived_gb", "saved_gb")
ARCHIVE_STATE = ("total_files", "avg_file_size_mb", "archive_frequency_per_day", "retention_days")
ARCHIVE_INPUT_COLUMNS = ("source_id", "date", *schemas.ARCHIVE_SHARE_COLUMNS, *ARCHIVE_STATE, *ARCHIVE_FLOWS)


def archive_sum_name(flow: str, days: int) -> str:
    """The feature holding log1p of a flow's sum over the last `days` days (the day itself included)."""
    return f"log1p_{flow}_sum_{days}d"


class ArchiveFeatures(TransformerMixin, BaseEstimator):
    """Daily archive records (one row per source and day) -> causal features of each row's day, in row order.

    A row's features read only its own source's rows up to and including its date (a day without a row
    archived nothing): its calendar (cyclical month and weekday, days to the month's end), type shares and
    policy, log1p sums of `archived_gb` / `saved_gb` over the last `windows` days and their values `lags`
    days before, the savings ratio over the longest window, and the days since the retention or the
    archive frequency last changed (at most the longest window). Sums add exactly the days in their window,
    so a row's features do not depend on how much earlier history is passed. Stateless apart from the
    names: any source works; a row needs `min_history_days()` days of history for complete features.
    """

    def __init__(self, windows=(7, 30, 91), lags=(0, 1, 7)):
        self.windows = windows
        self.lags = lags

    def min_history_days(self) -> int:
        return max(*self.windows, *self.lags) + 1

    def fit(self, X: pd.DataFrame, y=None):
        self._checked(X)
        self.feature_names_out_ = self._names()
        return self

    def get_feature_names_out(self, input_features=None):
        return np.asarray(self.feature_names_out_, dtype=object)

    def _names(self) -> list[str]:
        names = ["month_sin", "month_cos", "dow_sin", "dow_cos", "days_to_month_end"]
        names += [*schemas.ARCHIVE_SHARE_COLUMNS, "log_total_files", "log_avg_file_size_mb"]
        names += ["archive_frequency_per_day", "log_retention_days", "days_since_policy_change"]
        for flow in ARCHIVE_FLOWS:
            names += [archive_sum_name(flow, w) for w in self.windows]
            names += [f"log1p_{flow}_lag{k}" for k in self.lags]
        return [*names, f"savings_ratio_{max(self.windows)}d"]

    def _checked(self, X: pd.DataFrame) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            raise TypeError(
                f"ArchiveFeatures needs a DataFrame of daily archive records, got {type(X).__name__}"
            )
        missing = [c for c in ARCHIVE_INPUT_COLUMNS if c not in X.columns]
        if missing:
            raise ValueError(f"archive records lack column(s) {missing}")
        frame = X[list(ARCHIVE_INPUT_COLUMNS)].copy()
        frame["date"] = pd.DatetimeIndex(pd.to_datetime(frame["date"])).normalize()
        dup = frame.duplicated(["source_id", "date"])
        if dup.any():
            first = frame[dup].iloc[0]
            raise ValueError(f"source {first['source_id']!r}: more than one row for {first['date'].date()}")
        return frame

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        frame = self._checked(X)
        when = _naive_ns(frame["date"])
        day = when.astype("datetime64[D]").astype(np.int64)
        month = when.astype("datetime64[M]")
        month_end = ((month + 1).astype("datetime64[D]").astype(np.int64)) - day - 1
        m, dow = month.astype(np.int64) % 12, _weekday(when)
        out = np.empty((len(frame), len(self._names())))
        out[:, :5] = np.column_stack(
            [np.sin(2 * np.pi * m / 12), np.cos(2 * np.pi * m / 12), np.sin(2 * np.pi * dow / 7),
             np.cos(2 * np.pi * dow / 7), month_end]
        )  # fmt: skip
        state = np.column_stack(
            [frame[list(schemas.ARCHIVE_SHARE_COLUMNS)].to_numpy(dtype=float), np.log1p(_floats(frame["total_files"])),
             np.log1p(_floats(frame["avg_file_size_mb"])), _floats(frame["archive_frequency_per_day"]),
             np.log(_floats(frame["retention_days"]))]
        )  # fmt: skip
        out[:, 5 : 5 + state.shape[1]] = state
        top, cap = 5 + state.shape[1], max(self.windows)
        policy = state[:, -2:]
        flows = np.column_stack([_floats(frame[f]) for f in ARCHIVE_FLOWS])
        for idx in frame.groupby("source_id", sort=False).indices.values():
            rows = idx[np.argsort(day[idx], kind="stable")]
            d = day[rows]
            p = d - d[0] + self.min_history_days()  # position on a zero-padded daily grid
            change = np.r_[False, (np.diff(policy[rows], axis=0) != 0).any(axis=1)]
            since = d - np.maximum.accumulate(np.where(change, d, d[0]))
            cols = [np.minimum(since, cap)]
            for j in range(len(ARCHIVE_FLOWS)):
                grid = np.zeros(p[-1] + 1)
                grid[p] = flows[rows, j]
                for w in self.windows:
                    sums = np.lib.stride_tricks.sliding_window_view(grid, w).sum(axis=1)
                    cols.append(np.log1p(np.maximum(sums[p - w + 1], 0.0)))
                cols += [np.log1p(np.maximum(grid[p - k], 0.0)) for k in self.lags]
            out[rows, top:-1] = np.column_stack(cols)
        names = self._names()
        arch, saved = (np.expm1(out[:, names.index(archive_sum_name(f, cap))]) for f in ARCHIVE_FLOWS)
        out[:, -1] = np.where(arch > 0, saved / np.where(arch > 0, arch, 1.0), 0.0)
        return out
