# $1 is 0 when the package is removed, 1 on upgrade.
if [ "$1" -eq 0 ]; then
    systemctl disable --now crawler-agent.service crawler-agent.socket crawler-agent-metrics.timer >/dev/null 2>&1 || true
fi
