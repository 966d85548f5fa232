#!/usr/bin/env bash
# Checks that the Grafana dashboard is valid JSON and queries only metrics the agent
# exports (or Prometheus' own `up`): every metric name in a panel expression must
# appear in the text of a running agent's `crawler-agent metrics` (AGENT_METRICS) or
# in the documented names below. Called from packaging/prometheus/ci-check.sh.
set -euo pipefail
dashboard="$(dirname "$0")/crawler-agent.json"
metrics_text=$1   # a file holding an exposition of the agent
python3 - "$dashboard" "$metrics_text" <<'PY'
import json, re, sys
d = json.load(open(sys.argv[1]))
text = open(sys.argv[2]).read()
exported = set(re.findall(r'^([a-z_:]+)(?:\{| )', text, re.M))
# Families without samples yet still have their TYPE line (counters get `_total`).
for name, kind in re.findall(r'^# TYPE ([a-z_:]+) ([a-z]+)', text, re.M):
    exported.add(name + "_total" if kind == "counter" else name)
# Prometheus' own series, and notification counters (added with the notify sinks).
exported |= {"crawler_agent_notifications_total", "up"}
missing = set()
for p in d["panels"]:
    for t in p["targets"]:
        for name in re.findall(r'\b((?:crawler_agent|process)_[a-z_]+|up)\b', t["expr"]):
            if name not in exported:
                missing.add(name)
if missing:
    sys.exit(f"dashboard queries metrics the agent does not export: {sorted(missing)}")
print(f"dashboard: {len(d['panels'])} panels, every metric exported")
PY
