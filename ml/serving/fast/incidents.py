"""Incident models compiled for requests: the SLA classifier (IncidentFeatures -> gradient boosting or
logistic regression, sigmoid-calibrated) and the triage / system-team heads (IncidentTextFeatures ->
logistic regression per head, per-class thresholds). Request records go straight into arrays.

Everything is read from the fitted objects; a step this module does not know raises `Unsupported` and the
model is served by its own `predict_proba` / `predict_frame` instead.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit
from sklearn.utils.extmath import softmax

from ml.features import CALENDAR_FEATURES, GROUP_LOAD, MISSING, calendar_columns, clean_text
from ml.serving.fast.text import CompiledTfidf, OneHotLookup
from ml.serving.fast.trees import PackedHistGradientBoosting, Unsupported
from ml.serving.schemas import Incident


def _floats(values) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


class FastIncidentFeatures:
    """`IncidentFeatures.transform` for request records (lists of schema objects)."""

    def __init__(self, f):
        if type(f).__name__ != "IncidentFeatures":
            raise Unsupported(f"features step {type(f).__name__}")
        self.cats = list(f.categorical_columns)
        self.routing = bool(f.routing_share) and {"subcategory", "assignment_group"} <= set(self.cats)
        self.use_load, self.use_text = bool(f.use_group_load), bool(f.use_text)
        self.hours = tuple(f.business_hours)
        names = [*CALENDAR_FEATURES, "impact", "urgency", "priority", "log_sla_hours"]
        names += [GROUP_LOAD] if self.use_load else []
        names += ["log_text_chars", "log_text_words"] if self.use_text else []
        if list(f.feature_names_out_[: len(names)]) != names:
            raise Unsupported("IncidentFeatures' numeric columns are not the ones this compiler knows")
        self.fill = np.array([f.medians_[c] for c in names], dtype=np.float64)
        self.onehot = OneHotLookup(f.encoder_, self.cats)
        if self.routing:
            self.group_share, self.sub_count, self.pair_count = (
                f.group_share_,
                f.subcategory_count_,
                f.pair_count_,
            )
        self.tfidf = CompiledTfidf(f.vectorizer_) if self.use_text else None
        self.svd = None
        if self.use_text and f.svd_ is not None:
            self.svd = np.ascontiguousarray(np.asarray(f.svd_.components_, dtype=np.float64).T)
        text_width = (
            0 if not self.use_text else (self.svd.shape[1] if self.svd is not None else self.tfidf.width)
        )
        self.width = len(names) + self.onehot.width + self.routing + text_width
        if self.width != len(f.feature_names_out_):
            raise Unsupported(
                f"{self.width} compiled columns, the features step has {len(f.feature_names_out_)}"
            )

    def transform(self, items) -> np.ndarray:
        n = len(items)
        when = np.array([x.opened_at for x in items], dtype="datetime64[ns]")
        cols = [
            *calendar_columns(when, self.hours),
            _floats([x.impact for x in items]),
            _floats([x.urgency for x in items]),
            _floats([x.priority for x in items]),
        ]
        with np.errstate(divide="ignore", invalid="ignore"):
            cols.append(np.log(_floats([x.sla_target_hours for x in items])))
        if self.use_load:
            cols.append(_floats([x.group_load_24h for x in items]))
        texts = []
        if self.use_text:
            for x in items:
                short = x.short_description if x.short_description is not None else ""
                desc = x.description if x.description is not None else ""
                texts.append((short + ". " + desc).strip(". "))
            cols.append(np.log1p(np.array([len(t) for t in texts], dtype=float)))
            cols.append(np.log1p(np.array([len(t.split()) for t in texts], dtype=float)))
        numeric = np.column_stack(cols).astype(np.float64, copy=False)
        missing = np.isnan(numeric)
        if missing.any():
            numeric = np.where(missing, self.fill, numeric)
        out = np.zeros((n, self.width))
        k = numeric.shape[1]
        out[:, :k] = numeric
        raw = [[MISSING if getattr(x, c) is None else str(getattr(x, c)) for c in self.cats] for x in items]
        for i, values in enumerate(raw):
            out[i, [k + j for j in self.onehot.positions(values)]] = 1.0
        k += self.onehot.width
        if self.routing:
            si, gi = self.cats.index("subcategory"), self.cats.index("assignment_group")
            sub = [r[si] for r in raw]
            grp = [r[gi] for r in raw]
            prior = np.array([self.group_share.get(g, 0.0) for g in grp])
            n_sub = np.array([self.sub_count.get(s, 0) for s in sub], dtype=float)
            n_pair = np.array([self.pair_count.get(f"{s}\x1f{g}", 0) for s, g in zip(sub, grp, strict=True)])
            out[:, k] = (n_pair + 5.0 * prior) / (n_sub + 5.0)  # IncidentFeatures' smoothing
            k += 1
        for i, text in enumerate(texts):
            idx, val = self.tfidf.row(text)
            if self.svd is None:
                out[i, k + idx] = val
            elif len(idx):  # csr @ dense: products added in column order (np.cumsum keeps that order)
                out[i, k:] = np.cumsum(val[:, None] * self.svd[idx], axis=0)[-1]
        return out


class _Head:
    """The final steps of a binary Pipeline after its features: optional StandardScaler, then HGB or LR."""

    def __init__(self, steps):
        self.scaler, self.kind = None, None
        *middle, (_, clf) = steps
        for _, step in middle:
            if type(step).__name__ != "StandardScaler" or self.scaler is not None:
                raise Unsupported(f"pipeline step {type(step).__name__}")
            self.scaler = step
        if len(getattr(clf, "classes_", [])) != 2:
            raise Unsupported("not a binary classifier")
        name = type(clf).__name__
        if name == "HistGradientBoostingClassifier":
            self.kind, self.trees = "hgb", PackedHistGradientBoosting(clf)
        elif name == "LogisticRegression":
            self.kind, self.coef, self.intercept = "lr", clf.coef_, clf.intercept_
        else:
            raise Unsupported(f"classifier {name}")

    def decision(self, X: np.ndarray) -> np.ndarray:
        if self.scaler is not None:
            X = self.scaler.transform(X)  # numpy in, numpy out: (x - mean) / scale
        if self.kind == "hgb":
            return self.trees.decision_function(X)
        return (X @ self.coef.T + self.intercept).ravel()


class FastSla:
    """P(breach) of the SLA model: `CalibratedClassifierCV` (sigmoid) around a Pipeline, or a bare Pipeline."""

    def __init__(self, model):
        parts = []
        if type(model).__name__ == "CalibratedClassifierCV":
            for cc in model.calibrated_classifiers_:
                cals = list(cc.calibrators)
                if cc.method != "sigmoid" or len(cals) != 1 or not hasattr(cals[0], "a_"):
                    raise Unsupported(f"calibration {cc.method!r} with {len(cals)} calibrator(s)")
                parts.append((self._pipeline(cc.estimator), (float(cals[0].a_), float(cals[0].b_))))
        elif type(model).__name__ == "Pipeline":
            parts.append((self._pipeline(model), None))
        else:
            raise Unsupported(f"SLA model {type(model).__name__}")
        self.parts = parts

    @staticmethod
    def _pipeline(pipe):
        steps = list(getattr(pipe, "steps", []))
        if len(steps) < 2:
            raise Unsupported(f"not a Pipeline: {type(pipe).__name__}")
        return FastIncidentFeatures(steps[0][1]), _Head(steps[1:])

    def breach_probability(self, items) -> np.ndarray:
        total = np.zeros(len(items))
        for (features, head), cal in self.parts:
            decision = head.decision(features.transform(items))
            total += expit(decision) if cal is None else expit(-(cal[0] * decision + cal[1]))
        return total / len(self.parts)


class FastClassifierHeads:
    """`PrecisionTargetClassifier.predict_frame` of the triage / system-team models, per request record."""

    def __init__(self, model):
        if type(model).__name__ != "PrecisionTargetClassifier":
            raise Unsupported(f"classifier {type(model).__name__}")
        f = model.features_
        if type(f).__name__ != "IncidentTextFeatures":
            raise Unsupported(f"features step {type(f).__name__}")
        self.dtype = np.dtype(f.dtype)
        self.max_chars = int(f.max_chars)
        self.blocks, offset = [], 0
        if f.use_text:
            for vec, weight, which in (
                (f.word_short_, f.short_weight, "short"),
                (f.word_desc_, 1.0, "desc"),
                (f.char_, f.char_weight, "both"),
            ):
                if vec is not None:
                    compiled = CompiledTfidf(vec)
                    self.blocks.append((compiled, float(weight), which, offset))
                    offset += compiled.width
        self.meta_cols = list(f.categorical_columns or ()) if f.encoder_ is not None else []
        unknown = [c for c in self.meta_cols if c not in Incident.model_fields]
        if unknown:
            raise Unsupported(f"reads {unknown}, which requests do not carry")
        self.onehot = OneHotLookup(f.encoder_, self.meta_cols) if self.meta_cols else None
        self.meta_offset, self.meta_weight = offset, float(f.metadata_weight)
        width = offset + (self.onehot.width if self.onehot else 0)
        if width != len(f.feature_names_out_):
            raise Unsupported(f"{width} compiled columns, the features step has {len(f.feature_names_out_)}")
        self.heads = []
        for clf in model.classifiers_:
            if type(clf).__name__ != "LogisticRegression":
                raise Unsupported(f"head {type(clf).__name__}")
            self.heads.append(
                (np.ascontiguousarray(clf.coef_.T), clf.intercept_)
            )  # its dtype: float32 X fits float32
        self.targets = list(model.target_names_)
        self.classes = model.classes_list_
        self.thresholds, self.reasons = model.thresholds_, model.threshold_reasons_

    def row(self, x) -> tuple[np.ndarray, np.ndarray]:
        """The non-zero (columns, values) of `IncidentTextFeatures.transform` for one record."""
        cols, vals = [], []
        if self.blocks:
            short = clean_text(x.short_description, self.max_chars)
            desc = clean_text(x.description, self.max_chars)
            text = {"short": short, "desc": desc, "both": f"{short} {desc}".strip()}
            for compiled, weight, which, offset in self.blocks:
                idx, val = compiled.row(text[which])
                cols.append(idx + offset)
                vals.append(val * weight)
        if self.onehot is not None:
            raw = [MISSING if getattr(x, c) is None else _category_str(getattr(x, c)) for c in self.meta_cols]
            pos = self.onehot.positions(raw)
            cols.append(np.asarray(pos, dtype=np.intp) + self.meta_offset)
            vals.append(np.ones(len(pos), dtype=self.dtype) * self.meta_weight)
        return np.concatenate(cols), np.concatenate(vals).astype(self.dtype, copy=False)

    def proba(self, items) -> list[np.ndarray]:
        rows = [self.row(x) for x in items]
        out = []
        for coef_t, intercept in self.heads:
            dtype = np.result_type(self.dtype, coef_t.dtype)
            decision = np.zeros((len(items), coef_t.shape[1]), dtype=dtype)
            for i, (idx, val) in enumerate(rows):
                if len(idx):  # csr @ dense: products added in column order, in its dtype, like scipy
                    decision[i] = np.cumsum(val.astype(dtype)[:, None] * coef_t[idx], axis=0)[-1]
            decision += intercept
            if decision.shape[1] == 1:
                p = expit(decision[:, 0])
                out.append(np.column_stack([1 - p, p]))
            else:
                out.append(softmax(decision, copy=False))
        return out

    def explain(self, items, top_k: int, targets) -> list[dict]:
        """Per record: {target: the `_head` answer of ml.serving.predict} for each asked head."""
        probs = self.proba(items)
        answers = [{} for _ in items]
        for t in targets:
            j = self.targets.index(t)
            proba, classes = probs[j], self.classes[j]
            thr, why = self.thresholds[j], self.reasons[j]
            top = np.argsort(-proba, axis=1, kind="stable")[:, : min(top_k, proba.shape[1])]
            for i, p in enumerate(proba):
                b = int(p.argmax())
                conf, threshold, label = float(p[b]), float(thr[b]), str(classes[b])
                abstain = not conf >= threshold
                if not abstain:
                    reason = None
                elif np.isinf(threshold):
                    reason = f"{classes[b]!r}: {why[b]}"
                else:
                    reason = f"confidence {p[b]:.2f} below the {thr[b]:.2f} threshold for {classes[b]!r}"
                answers[i][t] = {
                    "prediction": None if abstain else label,
                    "abstain": abstain,
                    "reason": reason,
                    "label": label,
                    "confidence": conf,
                    "threshold": threshold if np.isfinite(threshold) else None,
                    "top": [{"label": str(classes[r]), "probability": float(p[r])} for r in top[i]],
                }
        return answers


def _category_str(value) -> str:
    """`ml.incidents.text`'s spelling of a categorical value: 2, 2.0 and "2" are one level."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)
