"""The landing zone as a source system would send it: dated sensor CSV, incident JSON and archive CSV batches,
a manifest.

`write_landing` is the generator's one place that writes files; `main` is `python -m ml.data.synth`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ml.config import load_params
from ml.data.schemas import ARCHIVE_COLUMNS, INCIDENT_COLUMNS, READING_COLUMNS, WINDOW_COLUMNS
from ml.data.synth.archive import archive_batches, make_archive
from ml.data.synth.common import DEFAULT_MONTHS, DEFAULT_START, FILE_TS_FORMAT, TS_FORMAT
from ml.data.synth.incidents import incident_batches, incident_export_time, make_incidents
from ml.data.synth.sensors import make_sensors, sensor_batches, sensor_shifts


def _write_atomic(path: Path, data: bytes) -> str:
    """Write bytes via a temporary file and rename, so a reader never sees half a file; return sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return hashlib.sha256(data).hexdigest()


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False, date_format=TS_FORMAT, lineterminator="\n").encode()


def _json_records_bytes(frame: pd.DataFrame) -> bytes:
    """A JSON array of records, one per line: ISO timestamps, null for missing, native ints and booleans."""
    columns = {}
    for col in frame.columns:
        s = frame[col]
        if pd.api.types.is_datetime64_any_dtype(s):
            values = [v if isinstance(v, str) else None for v in s.dt.strftime(TS_FORMAT).tolist()]
        else:
            values = [None if v is pd.NA or v is None or (isinstance(v, float) and math.isnan(v)) else v
                      for v in s.astype(object).tolist()]  # fmt: skip
        columns[col] = values
    lines = [
        json.dumps(dict(zip(columns, row, strict=True)), sort_keys=True, ensure_ascii=False)
        for row in zip(*columns.values(), strict=True)
    ]
    return ("[\n" + ",\n".join(lines) + ("\n" if lines else "") + "]\n").encode()


def _remove_stale(directory: Path, pattern: str, keep: set[str]) -> None:
    """Drop batch files of an earlier run that this run did not write, so the landing dir is exactly one run."""
    for old in directory.glob(pattern):
        if old.name not in keep:
            old.unlink()


def write_landing(params: Mapping[str, Any], out_dir: str | os.PathLike) -> dict[str, Any]:
    """Write the landing zone from the `generate` params: sensor CSV batches, incident JSON batches, labels, manifest."""
    out = Path(out_dir)
    seed = params.get("seed", 0)
    sensor_params = dict(params.get("sensors") or {})
    incident_params = dict(params.get("incidents") or {})
    sensor_every = sensor_params.pop("batch_every", "7D")
    resend = sensor_params.pop("resend_overlap", "6h")
    incident_every = incident_params.pop("batch_every", "14D")

    readings, windows = make_sensors(seed=seed, **sensor_params)
    shifts = sensor_shifts(seed=seed, **sensor_params)
    final = make_incidents(seed=seed, **incident_params)
    export_at = incident_export_time(
        incident_params.get("start", DEFAULT_START), incident_params.get("months", DEFAULT_MONTHS)
    )

    files: list[dict[str, Any]] = []

    def record(rel: str, data: bytes, rows: int, as_of: pd.Timestamp | None = None) -> None:
        entry: dict[str, Any] = {"path": rel, "rows": rows, "sha256": _write_atomic(out / rel, data)}
        if as_of is not None:
            entry["as_of"] = as_of.strftime(TS_FORMAT)
        files.append(entry)

    sensor_names = set()
    for as_of, batch in sensor_batches(readings, every=sensor_every, resend_overlap=resend):
        name = f"readings_{as_of.strftime(FILE_TS_FORMAT)}.csv"
        sensor_names.add(name)
        record(f"sensors/{name}", _csv_bytes(batch[READING_COLUMNS]), len(batch), as_of)
    record("sensors/anomaly_windows.csv", _csv_bytes(windows[WINDOW_COLUMNS]), len(windows))
    record("sensors/shifts.csv", _csv_bytes(shifts), len(shifts))
    _remove_stale(out / "sensors", "readings_*.csv", sensor_names)

    incident_names = set()
    for as_of, batch in incident_batches(final, every=incident_every, export_at=export_at):
        name = f"incidents_{as_of.strftime(FILE_TS_FORMAT)}.json"
        incident_names.add(name)
        record(f"incidents/{name}", _json_records_bytes(batch[INCIDENT_COLUMNS]), len(batch), as_of)
    _remove_stale(out / "incidents", "incidents_*.json", incident_names)

    archive = _write_archive(params.get("archive"), seed, record, out)

    rollout = incident_params.get("rollout") or None
    recal = sensor_params.get("recalibration") or None
    closed_or_resolved = final["made_sla"].notna()
    manifest = {
        "generator": "ml.data.synth",
        "seed": seed,
        "params": params,
        "rows": {
            "sensor_readings": len(readings),
            "anomaly_windows": len(windows),
            "sensor_shifts": len(shifts),
            "incidents": len(final),
            **archive["rows"],
        },
        "injected_shifts": {
            "sensor_recalibration_at": pd.Timestamp(recal["at"]).strftime(TS_FORMAT) if recal else None,
            "recalibrated_sensors": shifts["sensor_id"].tolist(),
            "incident_rollout_at": pd.Timestamp(rollout["at"]).strftime(TS_FORMAT) if rollout else None,
            "rollout_system": str(rollout["system"]) if rollout else None,
            **archive["shifts"],
        },
        "incidents": {
            "export_at": export_at.strftime(TS_FORMAT),
            "open_at_export": int((~closed_or_resolved).sum()),
            "breach_rate": round(
                float(1.0 - final.loc[closed_or_resolved, "made_sla"].astype(bool).mean()), 4
            ),
        },
        "files": files,
    }
    text = json.dumps(manifest, sort_keys=True, indent=2, default=str) + "\n"
    _write_atomic(out / "manifest.json", text.encode())
    return json.loads(text)


def _write_archive(archive_params: Mapping[str, Any] | None, seed: int, record, out: Path) -> dict[str, Any]:
    """Archive CSV batches and the policy changes injected (when the params have an `archive` section)."""
    if not archive_params:
        return {"rows": {}, "shifts": {}}
    cfg = dict(archive_params)
    every, resend = cfg.pop("batch_every", "28D"), cfg.pop("resend_overlap", "1D")
    activity, changes = make_archive(seed=seed, **cfg)
    names = set()
    for as_of, batch in archive_batches(activity, every=every, resend_overlap=resend):
        name = f"archive_{as_of.strftime(FILE_TS_FORMAT)}.csv"
        names.add(name)
        record(
            f"archive/{name}",
            _csv_bytes(batch[ARCHIVE_COLUMNS].assign(date=batch["date"].dt.strftime("%Y-%m-%d"))),
            len(batch),
            as_of,
        )
    record("archive/policy_changes.csv", _csv_bytes(changes), len(changes))
    _remove_stale(out / "archive", "archive_*.csv", names)
    return {
        "rows": {"archive_activity": len(activity), "archive_policy_changes": len(changes)},
        "shifts": {
            "archive_policy_changes": changes.assign(at=changes["at"].dt.strftime("%Y-%m-%d")).to_dict(
                "records"
            )
        },
    }


def smoke_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Shrink the generate params for a quick run: 2,000 incidents, 21 days of sensors (shift dates scaled along)."""
    smoke = json.loads(json.dumps(params, default=str))
    sensors = smoke.setdefault("sensors", {})
    days = float(sensors.get("days", 60))
    new_days = min(days, 21)
    recal = sensors.get("recalibration")
    if recal and new_days < days:
        start = pd.Timestamp(sensors.get("start", DEFAULT_START))
        frac = (pd.Timestamp(recal["at"]) - start) / pd.Timedelta(days=days)
        recal["at"] = (start + frac * pd.Timedelta(days=new_days)).floor("h").strftime(TS_FORMAT)
    sensors["days"] = new_days
    incidents = smoke.setdefault("incidents", {})
    incidents["n_incidents"] = min(int(incidents.get("n_incidents", 20_000)), 2_000)
    if smoke.get("archive"):  # 30 sources over 14 months: still a year of history before the backtest
        smoke["archive"]["n_sources"] = min(int(smoke["archive"].get("n_sources", 40)), 30)
        smoke["archive"]["days"] = min(int(smoke["archive"].get("days", 730)), 425)
    return smoke


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: write the synthetic landing zone from the `generate` section of params.yaml."""
    parser = argparse.ArgumentParser(prog="python -m ml.data.synth", description=main.__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file with a `generate` section")
    parser.add_argument("--out", default="data/landing", help="landing directory to (re)write")
    parser.add_argument(
        "--smoke", action="store_true", help="small run: 2,000 incidents and 21 days of sensors"
    )
    args = parser.parse_args(argv)
    params = load_params(args.params).get("generate")
    if not isinstance(params, Mapping):
        parser.error(f"{args.params} has no `generate` section")
    if args.smoke:
        params = smoke_params(params)
    manifest = write_landing(params, args.out)
    rows, shifts, inc = manifest["rows"], manifest["injected_shifts"], manifest["incidents"]
    sensor_files = [f for f in manifest["files"] if f["path"].startswith("sensors/readings_")]
    incident_files = [f for f in manifest["files"] if f["path"].startswith("incidents/")]
    print(
        f"sensors: {rows['sensor_readings']:,} readings in {len(sensor_files)} batches, "
        f"{rows['anomaly_windows']} anomaly windows, {rows['sensor_shifts']} recalibrated sensors "
        f"(at {shifts['sensor_recalibration_at']}) -> {Path(args.out) / 'sensors'}"
    )
    print(
        f"incidents: {rows['incidents']:,} incidents in {len(incident_files)} batches, "
        f"{inc['open_at_export']} open at {inc['export_at']}, breach rate {inc['breach_rate']:.1%}, "
        f"rollout {shifts['rollout_system']} at {shifts['incident_rollout_at']} -> {Path(args.out) / 'incidents'}"
    )
    if "archive_activity" in rows:
        archive_files = [f for f in manifest["files"] if f["path"].startswith("archive/archive_")]
        print(
            f"archive: {rows['archive_activity']:,} source-days in {len(archive_files)} batches, "
            f"{rows['archive_policy_changes']} policy changes -> {Path(args.out) / 'archive'}"
        )
    return 0
