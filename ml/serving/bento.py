"""Class-scope model references that make `bentoml build` carry the registry's models.

`RegistryModel("sensor-anomaly")` in the service class is a BentoML 1.4 model reference (like `BentoModel`)
whose source is the MLflow registry's `models:/<name>@champion` (or `OPSLAB_MODEL_URI_<NAME>`):

- at `bentoml build`, `to_info()` resolves that version, verifies its sha256, and imports it into the local
  BentoML model store as `<name>:v<version>-<sha256[:12]>` (once; the same bytes are never imported twice)
  together with an `opslab_model.json` manifest; the Bento records that tag, so `bentoml containerize` /
  `bentoml export` copy the model into the image;
- when serving from source, `resolve()` never fails the server: the service itself loads models from the
  registry with fallbacks (ml/serving/loading.py); inside a built Bento, BentoML resolves the carried copy
  from the Bento's own model store, which is the service's last fallback.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import attrs
import bentoml
from bentoml.exceptions import BentoMLException, NotFound
from bentoml.models import BentoModel

from ml.serving import loading

log = logging.getLogger("opslab.serving")


def bento_tag(name: str, source: loading.Source) -> str:
    return f"{name}:v{source.version}-{source.model_sha256[:12]}"


def import_to_bento_store(name: str, loader=None) -> str:
    """Copy the model the service would load now into the BentoML model store (verified); returns the tag."""
    source = loading.resolve(name)
    if source.kind == "bento":
        return f"{name}:{Path(source.uri).name}"
    tag = bento_tag(name, source)
    try:
        bentoml.models.get(tag)
        return tag
    except NotFound:
        pass
    scratch = Path(tempfile.mkdtemp(prefix="opslab-bento-"))
    try:
        local = source.local_dir if source.local_dir is not None else source.fetch(scratch)
        if loader is not None:
            loader(local, source.model_sha256)  # verify (and prove it loads) before it goes into a Bento
        manifest = {
            "name": name,
            "version": source.version,
            "alias": source.alias,
            "model_sha256": source.model_sha256,
            "run_id": source.run_id,
            "metrics": source.metrics,
            "imported_from": f"{source.kind} {source.uri}",
        }
        with bentoml.models.create(
            tag,
            labels={"opslab.version": source.version, "opslab.alias": source.alias or ""},
            metadata={"model_sha256": source.model_sha256, "source": f"{source.kind} {source.uri}"},
        ) as stored:
            dest = Path(stored.path)
            for item in Path(local).iterdir():
                if item.name == loading.MANIFEST:
                    continue
                (shutil.copytree if item.is_dir() else shutil.copy2)(item, dest / item.name)
            (dest / loading.MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        log.info("opslab: imported %s (%s %s) into the BentoML model store", tag, source.kind, source.uri)
        return tag
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@attrs.frozen(init=False)
class RegistryModel(BentoModel):
    """A BentoML model reference whose source of truth is the MLflow registry (see module docstring)."""

    def __init__(self, name: str):
        self.__attrs_init__(f"{name}:latest")

    @classmethod
    def declare(cls, name: str) -> RegistryModel | None:
        """The class-scope reference, or None when OPSLAB_BENTO_MODELS (comma-separated) leaves it out."""
        only = os.environ.get("OPSLAB_BENTO_MODELS")
        if only is not None and name not in {m.strip() for m in only.split(",")}:
            return None
        return cls(name)

    def to_info(self, alias: str | None = None):
        from ml.serving.table import (  # imported on use: the model table pulls every model module
            LOADERS,
            MODELS,
        )

        name = self.tag.name
        spec = MODELS.get(name)
        try:
            tag = import_to_bento_store(name, LOADERS[spec.loader] if spec else None)
        except loading.ResolveError as exc:
            raise BentoMLException(
                f"{name}: cannot build a Bento carrying it: {exc}. Train/register it first, or leave it out "
                f"with OPSLAB_BENTO_MODELS=<comma-separated names>"
            ) from exc
        return BentoModel(tag).to_info(alias)

    def resolve(self, base_path=None):
        """Never fails a server start: the service loads from the registry with its own fallbacks."""
        if self.stored is None:  # absent from the store is normal when serving from source
            return None
        try:
            return BentoModel(self.tag).resolve(base_path)
        except Exception:  # noqa: BLE001
            return None
