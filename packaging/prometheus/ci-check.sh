#!/usr/bin/env bash
# CI check of the alerting kit against real engines (called from .ci/run):
#   1. promtool checks and unit-tests the alert rules;
#   2. a real Prometheus on loopback scrapes a real agent's metrics.listen endpoint;
#      through its HTTP API we check that the agent's series arrive, that every rule
#      of the group evaluates without error, and that one rule fires once its input
#      holds (a paused entity type, set with sqlite3 as an operator would).
# Usage: packaging/prometheus/ci-check.sh [AGENT_BINARY]  (default target/debug)
set -euo pipefail
here=$(dirname "$0")
# The binary is named relative to where we were called from, before the cd.
bin=$(realpath "${1:-$here/../../target/debug/crawler-agent}")
cd "$here"

promtool check rules crawler-agent.rules.yml
promtool test rules crawler-agent.rules.test.yml

work=$(mktemp -d)
agent_pid=; prom_pid=
cleanup() {
    [ -n "$prom_pid" ] && kill "$prom_pid" 2>/dev/null && wait "$prom_pid" 2>/dev/null || true
    [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
agent_port=$(free_port)
prom_port=$(free_port)

CRAWLER_AGENT_METRICS_LISTEN="127.0.0.1:$agent_port" \
    "$bin" --db "$work/agent.db" --socket "$work/agent.sock" serve 2>"$work/agent.log" &
agent_pid=$!

cat >"$work/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $PWD/crawler-agent.rules.yml
scrape_configs:
  - job_name: crawler-agent
    static_configs:
      - targets: ["127.0.0.1:$agent_port"]
YML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
    --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
prom_pid=$!

api() { curl -fsS --max-time 5 "http://127.0.0.1:$prom_port/api/v1/$1" 2>/dev/null || true; }
# Waits (up to 60 s) until `api $1` prints something matching the regex $2.
wait_for() {
    for _ in $(seq 600); do
        if api "$1" | grep -Eq "$2"; then return 0; fi
        sleep 0.1
    done
    echo "prometheus-ci-check: timed out waiting for $1 to match $2" >&2
    echo "last answer: $(api "$1")" >&2
    echo "--- agent log"; tail -20 "$work/agent.log" >&2
    echo "--- prometheus log"; tail -20 "$work/prometheus.log" >&2
    return 1
}

# The agent's series arrive (up is 1, and the agent's own and process_* series).
wait_for 'query?query=up%7Bjob%3D%22crawler-agent%22%7D' '"value":\[[0-9.]+,"1"\]'
wait_for 'query?query=crawler_agent_up' '"value":\[[0-9.]+,"1"\]'
wait_for 'query?query=process_resident_memory_bytes%7Bjob%3D%22crawler-agent%22%7D' '"value":\[[0-9.]+,"[1-9][0-9]*"\]'
# Every rule evaluated, none with an error.
wait_for 'rules' '"lastEvaluation":"[2-9]'
if api rules | grep -Eq '"health":"(err|unknown)"'; then
    echo "prometheus-ci-check: a rule does not evaluate: $(api rules)" >&2
    exit 1
fi
# The dashboard queries only what the agent exports (the text Prometheus scraped).
curl -fsS --max-time 5 "http://127.0.0.1:$agent_port/metrics" >"$work/metrics.txt"
bash ../grafana/check-dashboard.sh "$work/metrics.txt"
# A rule fires once its input holds.
sqlite3 "$work/agent.db" "INSERT INTO paused_entity_types (entity_type, paused_at, reason)
    VALUES ('project', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'ci check')"
wait_for 'alerts' '"alertname":"CrawlerAgentEntityTypePaused".*"state":"firing"'
echo "prometheus-ci-check: promtool tests pass; Prometheus scraped the agent, evaluated every rule and fired CrawlerAgentEntityTypePaused"
