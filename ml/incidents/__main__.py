"""`python -m ml.incidents evaluate --event-log FILE --out metrics.json`: see ml/incidents/evaluate.py."""

from ml.incidents.evaluate import main

raise SystemExit(main())
