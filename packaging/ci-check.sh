#!/usr/bin/env bash
# Builds the .deb and .rpm, checks what they contain, installs the .deb on this
# machine, checks the user, directories, files and modes, verifies the units, runs the
# installed binary as the service user against the packaged config with a short
# crawler session, and purges the package again. Run by .ci/run (as root).
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
need cargo-deb || cargo install --locked cargo-deb
need cargo-generate-rpm || cargo install --locked cargo-generate-rpm
if ! need rpm; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rpm >/dev/null
fi

packaging/build.sh >/dev/null
deb=$(ls target/debian/crawler-agent_*.deb)
rpm=$(ls target/generate-rpm/crawler-agent-*.rpm)

fail() { echo "package check failed: $*" >&2; exit 1; }
expect_in() { grep -q -- "$2" <<<"$1" || fail "$3: missing $2"; }

contents=$(dpkg-deb -c "$deb")
for f in ./usr/bin/crawler-agent ./etc/crawler-agent/config.toml \
         ./usr/lib/systemd/system/crawler-agent.service ./usr/lib/systemd/system/crawler-agent.socket \
         ./usr/lib/systemd/system/crawler-agent-metrics.timer ./usr/lib/sysusers.d/crawler-agent.conf \
         ./usr/lib/tmpfiles.d/crawler-agent.conf ./usr/share/man/man1/crawler-agent.1.gz \
         ./usr/share/man/man1/crawler-agent-jobs-list.1.gz \
         ./usr/share/bash-completion/completions/crawler-agent; do
    expect_in "$contents" "$f" ".deb"
done
dpkg-deb -f "$deb" Conffiles >/dev/null 2>&1 || true
expect_in "$(dpkg-deb -I "$deb" conffiles)" "/etc/crawler-agent/config.toml" ".deb conffiles"
listing=$(rpm -qlp "$rpm" 2>/dev/null)
for f in /usr/bin/crawler-agent /etc/crawler-agent/config.toml /usr/lib/systemd/system/crawler-agent.service \
         /usr/lib/sysusers.d/crawler-agent.conf /usr/share/man/man1/crawler-agent.1 \
         /usr/share/man/man1/crawler-agent-jobs-list.1; do
    expect_in "$listing" "$f" ".rpm"
done
expect_in "$(rpm -qcp "$rpm" 2>/dev/null)" "/etc/crawler-agent/config.toml" ".rpm config files"

dpkg -i "$deb" >/dev/null
trap 'dpkg -P crawler-agent >/dev/null 2>&1 || true; rm -rf /run/crawler-agent' EXIT
getent passwd crawler-agent >/dev/null || fail "no crawler-agent user"
getent group crawler-agent >/dev/null || fail "no crawler-agent group"
[ "$(stat -c '%a %U %G' /var/lib/crawler-agent)" = "750 crawler-agent crawler-agent" ] || fail "/var/lib/crawler-agent: $(stat -c '%a %U %G' /var/lib/crawler-agent)"
[ "$(stat -c '%a %U %G' /etc/crawler-agent/config.toml)" = "640 root crawler-agent" ] || fail "config.toml: $(stat -c '%a %U %G' /etc/crawler-agent/config.toml)"
[ "$(stat -c '%a' /usr/bin/crawler-agent)" = "755" ] || fail "binary mode"
if need systemd-analyze; then
    # Only this package's own complaints count (no running systemd here).
    out=$(systemd-analyze verify /usr/lib/systemd/system/crawler-agent{,-metrics}.service \
          /usr/lib/systemd/system/crawler-agent.socket /usr/lib/systemd/system/crawler-agent-metrics.timer 2>&1 || true)
    if grep -v "Documentation\|man crawler-agent\|file:///" <<<"$out" | grep -qi "crawler-agent"; then
        echo "$out" >&2
        fail "systemd-analyze verify"
    fi
    systemd-analyze security --offline=true /usr/lib/systemd/system/crawler-agent.service 2>/dev/null | tail -1
fi

# The installed binary, as the service user, with the packaged config, the way the
# unit runs it (systemd would set these directory variables).
install -d -m 0750 -o crawler-agent -g crawler-agent /run/crawler-agent
# setpriv execs the command itself (no process in between), so $! is the agent.
run_as() {
    env STATE_DIRECTORY=/var/lib/crawler-agent RUNTIME_DIRECTORY=/run/crawler-agent \
        CONFIGURATION_DIRECTORY=/etc/crawler-agent HOME=/var/lib/crawler-agent \
        setpriv --reuid crawler-agent --regid crawler-agent --init-groups "$@"
}
run_as crawler-agent --config /etc/crawler-agent/config.toml config check >/dev/null
TOKEN=ci-token run_as crawler-agent --config /etc/crawler-agent/config.toml credentials add ci \
    --url https://gitlab.example.com --token-env TOKEN >/dev/null
env STATE_DIRECTORY=/var/lib/crawler-agent RUNTIME_DIRECTORY=/run/crawler-agent \
    CONFIGURATION_DIRECTORY=/etc/crawler-agent HOME=/var/lib/crawler-agent \
    setpriv --reuid crawler-agent --regid crawler-agent --init-groups \
    crawler-agent --config /etc/crawler-agent/config.toml serve >/dev/null 2>/tmp/crawler-agent-ci.log &
agent=$!
trap 'kill -TERM $agent 2>/dev/null || true; dpkg -P crawler-agent >/dev/null 2>&1 || true; rm -rf /run/crawler-agent' EXIT
for _ in $(seq 100); do [ -S /run/crawler-agent/agent.sock ] && break; sleep 0.05; done
[ "$(stat -c '%a %G' /run/crawler-agent/agent.sock)" = "660 crawler-agent" ] || fail "socket mode/group"
python3 - <<'PY' || fail "crawler session"
import json, socket
s = socket.socket(socket.AF_UNIX)
s.connect("/run/crawler-agent/agent.sock")
def send(m): s.sendall(json.dumps(m, separators=(",", ":")).encode())
def recv():
    buf = b""
    while b"\n" not in buf:
        buf += s.recv(4096)
    return json.loads(buf.split(b"\n")[0])
send({"type": "job_request", "timestamp": "2025-07-12T10:20:00.001Z", "data": {}})
job = recv()["data"]["jobs"][0]
assert job["entityType"] == "areas" and job["accessToken"] == "ci-token", job
send({"type": "job_started", "jobId": job["id"], "data": {}})
send({"type": "jobs_discovered", "jobId": job["id"], "data": {"discovered_jobs": [
    {"job_type": "crawl_group", "entity_id": "1", "namespace_path": "g", "entity_name": "G", "priority": 1}]}})
send({"type": "job_completed", "jobId": job["id"], "data": {"success": True, "finalCounts": {"areas": 1}}})
send({"type": "job_request", "timestamp": "2025-07-12T10:20:05.001Z", "data": {}})
assert recv()["data"]["jobs"][0]["entityType"] == "group"
PY
kill -TERM "$agent"
wait "$agent" || fail "agent exit status"
jobs=$(sqlite3 -readonly /var/lib/crawler-agent/agent.db "SELECT group_concat(status, ',') FROM (SELECT status FROM jobs ORDER BY id)")
[ "$jobs" = "finished,assigned" ] || fail "jobs after the session: $jobs"
[ ! -e /run/crawler-agent/agent.sock ] || fail "socket not removed"
echo "packages: $(basename "$deb"), $(basename "$rpm") built, checked, installed, run and purged"
