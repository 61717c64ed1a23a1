"""Where a served model comes from, checked before it is loaded.

Order, per model:
1. a source override — `OPSLAB_MODEL_URI_<NAME>` at start, or `uris` in `/models/reload` — naming
   `models:/<name>/<version>` or `models:/<name>@<alias>` (env only: also a local model directory);
   an override that cannot be resolved fails that model (no silent fallback to another version);
2. otherwise the registry's `models:/<name>@champion`;
3. when the registry is unreachable or has no champion: the exported copy under `models/<name>/`
   (`OPSLAB_MODELS_DIR`), then the copy a built Bento carries (the BentoML model store). `/models` says so.

Whatever the source, the model's bytes are checked against its `model_sha256` (the registry version's tag,
or the exported copy's manifest) before they are deserialised; a mismatch refuses the load. The drift
reference saved with the model is checked the same way against `reference_sha256` (no hash: no reference).
A copy on disk (exported, Bento, path) carries its hashes in a manifest beside it, which catches accidents,
not tampering; so when the registry is reachable, the manifest's hashes must equal the registry's tags of
that version, or the copy is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import bentoml
import mlflow

from ml import config, registry
from ml.monitoring import reference
from ml.serving import settings

MANIFEST = "opslab_model.json"
CHAMPION = registry.CHAMPION


class ResolveError(Exception):
    """The model could not be found or verified at any allowed source (message says where and why)."""


@dataclass(frozen=True)
class Source:
    """Where a model's bytes come from and what the registry says about them (no bytes read yet)."""

    kind: str  # registry | override | exported-copy | bento | path
    uri: str
    version: str
    model_sha256: str
    alias: str | None = None
    run_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    note: str | None = None
    reference_sha256: str | None = None  # the drift reference saved with the model (None: not covered)
    fetch: Callable[[Path], Path] | None = None  # copies the model dir under a scratch dir, returns it
    local_dir: Path | None = None  # already on disk (exported copy, Bento store, local override)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "uri": self.uri,
            "version": self.version,
            "model_sha256": self.model_sha256,
            "alias": self.alias,
            "note": self.note,
        }


# --- the registry -----------------------------------------------------------------------------------
def _fail_fast_http() -> None:
    """An unreachable HTTP tracking server should fail in seconds, not after MLflow's minutes of retries;
    and no download progress bars in the server log."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def registry_problem() -> str | None:
    """Why the registry cannot be used right now (None when it looks usable), without creating anything.

    A SQLite URI whose file does not exist counts as unreachable: MLflow would silently create an empty
    store there (e.g. inside a container), which is never what the service wants.
    """
    uri = registry.tracking_uri()
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        # sqlite:////abs/path.db (absolute) or sqlite:///rel/path.db (relative to the working directory)
        path = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else parsed.path
        if not Path(path).is_file():
            return f"registry unreachable: no SQLite store at {path}"
    elif parsed.scheme in ("http", "https"):
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:  # a refused or silent port is known in seconds, without importing MLflow at all
            socket.create_connection((parsed.hostname, port), timeout=3).close()
        except OSError as exc:
            return f"registry unreachable: {parsed.hostname}:{port}: {exc.strerror or exc}"
    elif parsed.scheme in ("", "file"):
        path = parsed.path if parsed.scheme else uri
        if not Path(path).exists():
            return f"registry unreachable: no tracking directory at {path}"
    return None


def _parse_models_uri(uri: str) -> tuple[str, str | None, str | None]:
    """`models:/name/3` -> (name, "3", None); `models:/name@alias` -> (name, None, alias)."""
    if not uri.startswith("models:/"):
        raise ResolveError(f"{uri!r} is not a models:/ URI")
    rest = uri[len("models:/") :]
    if "@" in rest:
        name, alias = rest.split("@", 1)
        return name, None, alias
    name, _, version = rest.partition("/")
    if not version.isdigit():
        raise ResolveError(f"{uri!r}: expected models:/<name>/<version> or models:/<name>@<alias>")
    return name, version, None


def from_registry(name: str, uri: str, kind: str) -> Source:
    """Resolve a models:/ URI in the registry to a version, its sha256 tag and its run's metrics."""
    problem = registry_problem()
    if problem:
        raise ResolveError(problem)
    _fail_fast_http()
    uri_name, version, alias = _parse_models_uri(uri)
    if uri_name != name:
        raise ResolveError(f"{uri!r} names model {uri_name!r}, not {name!r}")
    try:
        c = registry.client()
        mv = c.get_model_version(name, version) if version else c.get_model_version_by_alias(name, alias)
    except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds; the message is what matters
        code = getattr(exc, "error_code", "")
        if code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            raise ResolveError(f"registry: no {uri} ({short_error(exc)})") from exc
        raise ResolveError(f"registry unreachable: cannot resolve {uri}: {short_error(exc)}") from exc
    sha = (mv.tags or {}).get("model_sha256")
    if not sha:
        raise ResolveError(f"registry: {name} v{mv.version} has no model_sha256 tag; refusing to load it")
    try:
        metrics = dict(c.get_run(mv.run_id).data.metrics) if mv.run_id else {}
    except Exception:  # noqa: BLE001 - metrics are informative only
        metrics = {}
    aliases = list(getattr(mv, "aliases", []) or [])
    version_uri = f"models:/{name}/{mv.version}"

    def fetch(scratch: Path) -> Path:

        dest = scratch / "download"
        dest.mkdir(parents=True, exist_ok=True)
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=version_uri, dst_path=str(dest)))

    return Source(
        kind=kind,
        uri=uri,
        version=str(mv.version),
        model_sha256=sha,
        reference_sha256=(mv.tags or {}).get("reference_sha256"),
        alias=alias or (CHAMPION if CHAMPION in aliases else (aliases[0] if aliases else None)),
        run_id=mv.run_id,
        metrics={k: float(v) for k, v in metrics.items()},
        fetch=fetch,
    )


# --- copies on disk ---------------------------------------------------------------------------------
def from_directory(name: str, directory: Path, kind: str, note: str | None = None) -> Source:
    """A model directory with an `opslab_model.json` manifest (an exported champion, a Bento's copy)."""
    manifest_path = Path(directory) / MANIFEST
    if not manifest_path.is_file():
        raise ResolveError(f"{directory}: no {MANIFEST} (an exported model has one); cannot verify it")
    try:
        manifest = json.loads(manifest_path.read_text())
        metrics = {str(k): float(v) for k, v in (manifest.get("metrics") or {}).items()}
    except (OSError, ValueError, TypeError, AttributeError) as exc:  # bad JSON, not an object, "n/a"
        raise ResolveError(f"{manifest_path}: malformed ({short_error(exc)})") from exc
    if manifest.get("name") not in (None, name):
        raise ResolveError(f"{directory}: holds model {manifest.get('name')!r}, not {name!r}")
    if not isinstance(manifest.get("model_sha256"), str) or not manifest["model_sha256"]:
        raise ResolveError(f"{manifest_path}: no model_sha256; refusing to load an unverifiable model")
    source = Source(
        kind=kind,
        uri=str(directory),
        version=str(manifest.get("version", "?")),
        model_sha256=manifest["model_sha256"],
        alias=manifest.get("alias"),
        run_id=manifest.get("run_id"),
        metrics=metrics,
        note=note,
        reference_sha256=manifest.get("reference_sha256"),
        local_dir=Path(directory),
    )
    return checked_against_registry(name, source)


def checked_against_registry(name: str, source: Source) -> Source:
    """A copy on disk, checked against the registry when it is reachable: the version its manifest names
    must exist there with the same `model_sha256` (and `reference_sha256`). Unreachable: the manifest's
    word is all there is, and the note says so."""
    if registry_problem() is not None:
        return source
    _fail_fast_http()
    try:
        mv = registry.client().get_model_version(name, source.version)
    except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds; the message is what matters
        code = getattr(exc, "error_code", "")
        if code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            raise ResolveError(
                f"{source.uri}: the registry is reachable but has no {name} v{source.version}; refusing a "
                "copy it cannot vouch for"
            ) from exc
        return replace(
            source, note="; ".join(filter(None, [source.note, "not checked against the registry"]))
        )
    tags = mv.tags or {}
    for tag in ("model_sha256", "reference_sha256"):
        if tags.get(tag) != getattr(source, tag):
            raise ResolveError(
                f"{source.uri}: {tag} {str(getattr(source, tag))[:12]}… of the copy does not match the "
                f"registry's {str(tags.get(tag))[:12]}… for {name} v{source.version}; refusing to load it"
            )
    return source


def exported_dir(name: str) -> Path:
    return Path(os.environ.get("OPSLAB_MODELS_DIR") or config.MODELS) / name


def from_bento_store(name: str, note: str | None = None) -> Source:
    """The newest copy of `name` in the BentoML model store (inside a Bento: the copy it carries)."""
    try:
        stored = bentoml.models.get(f"{name}:latest")
    except Exception as exc:  # noqa: BLE001 - not found, or no store
        raise ResolveError(f"no copy of {name} in the BentoML model store ({short_error(exc)})") from exc
    return from_directory(name, Path(stored.path), "bento", note)


# --- the whole order ----------------------------------------------------------------------------------
def resolve(name: str, override: str | None = None, *, use_env: bool = True) -> Source:
    """Find where `name` should come from now (see the module docstring for the order).

    `override` wins over `OPSLAB_MODEL_URI_<NAME>`; `use_env=False` ignores that variable (a reload that
    cleared the override goes back to the champion).
    """
    if not override and use_env:
        override = os.environ.get(settings.uri_env_var(name)) or None
    if override:
        if override.startswith("models:/"):
            return from_registry(name, override, "override")
        path = Path(override[len("file://") :] if override.startswith("file://") else override)
        if path.is_dir():
            return from_directory(name, path, "path")
        raise ResolveError(f"override {override!r}: neither a models:/ URI nor a model directory")
    problems = []
    try:
        return from_registry(name, f"models:/{name}@{CHAMPION}", "registry")
    except ResolveError as exc:
        problems.append(str(exc))
    fallback_note = "; ".join(problems)
    try:
        return from_directory(
            name,
            exported_dir(name),
            "exported-copy",
            note=f"{fallback_note}; serving the last exported copy under {exported_dir(name).parent}",
        )
    except ResolveError as exc:
        problems.append(str(exc))
    try:
        return from_bento_store(name, note=f"{fallback_note}; serving the copy this Bento carries")
    except ResolveError as exc:
        problems.append(str(exc))
    raise ResolveError(" | ".join(problems))


def load(source: Source, loader: Callable[[Path, str], Any]) -> Any:
    """Materialise the source's directory (download if needed), verify sha256 and deserialise it.

    `loader(dir, expected_sha256)` must check the bytes against the sha256 before deserialising (the
    registry's `load_sklearn` / `load_forecaster` do). A downloaded copy is deleted once loaded.
    """
    if source.local_dir is not None:
        return loader(source.local_dir, source.model_sha256)
    scratch = Path(tempfile.mkdtemp(prefix="opslab-serving-"))
    try:
        local = source.fetch(scratch)
        return loader(local, source.model_sha256)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def load_reference(source: Source):
    """The training reference saved with this model version (for /check_drift), or (None, why not).

    Looked for as `reference/` inside the model directory (`log_and_register(reference=...)` writes it
    there, so an exported copy and a Bento's copy carry it) and, for a registry version, as the `reference`
    artifact of its run or `model/reference`. Its own sha256 is checked by `ml.monitoring.reference.load_reference`.
    """

    if source.local_dir is not None:
        local = Path(source.local_dir) / reference.REFERENCE_DIR
        if (local / reference.REFERENCE_META).is_file():
            return _verified_reference(local, source), str(local)
        return None, f"no {reference.REFERENCE_DIR}/ in {source.local_dir}"
    if not source.run_id:
        return None, "no run to look in"

    scratch = Path(tempfile.mkdtemp(prefix="opslab-reference-"))
    try:
        for path in (reference.REFERENCE_DIR, f"model/{reference.REFERENCE_DIR}"):
            try:
                got = Path(
                    mlflow.artifacts.download_artifacts(
                        run_id=source.run_id,
                        artifact_path=path,
                        dst_path=str(scratch / path.replace("/", "_")),
                    )
                )
            except Exception:  # noqa: BLE001 - absent artifact
                continue
            if (got / reference.REFERENCE_META).is_file():
                return _verified_reference(got, source), f"runs:/{source.run_id}/{path}"
        return None, f"run {source.run_id} has no {reference.REFERENCE_DIR} artifact"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _verified_reference(directory: Path, source: Source):
    """The reference in `directory` if its files hash to the version's `reference_sha256`, else an error."""
    if not source.reference_sha256:
        raise ResolveError(f"{source.kind} v{source.version} records no reference_sha256; reference not used")
    actual = registry.tree_sha256(directory)
    if actual != source.reference_sha256:
        raise ResolveError(
            f"reference sha256 {actual[:12]}… does not match the recorded {source.reference_sha256[:12]}…"
        )
    return reference.load_reference(directory)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def short_error(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"
