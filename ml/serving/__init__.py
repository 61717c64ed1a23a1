"""The HTTP service's logic (service.py is the thin BentoML shell around it; docs/serving.md).

- `settings`: limits and switches from params.yaml `serving:` / `monitoring:` (+ env), read once.
- `schemas`: strict pydantic request/response models (limits from params are part of the schema).
- `table`: the model table — model name -> loader, endpoints, predict functions, training stage. Adding a
  model is a table entry (plus one class-scope line and one typed method in service.py).
- `predict`: request -> the batch frame -> the model's own ml/ function -> response fields.
- `loading`: where a model comes from (env override -> MLflow registry -> exported copy under models/ ->
  the copy a built Bento carries) and the sha256 check before anything is deserialised.
- `runtime`: the running state: background loading, swappable model slots, reload/rollback without restart,
  503 per model.
- `guard`: the ASGI middleware: API keys with scopes, body size, content type; the bind rules.
- `openapi`: the corrected OpenAPI document served at /docs.json.
- `accel`: exact, faster Isolation Forest scoring (same numbers as sklearn).
- `bento`: the class-scope model reference that makes `bentoml build` carry the registry's champions.
- `fixtures`: small real models in a scratch registry, for the service tests and the benchmark.
"""
