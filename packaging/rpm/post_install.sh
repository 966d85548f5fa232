if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers /usr/lib/sysusers.d/crawler-agent.conf
elif ! getent passwd crawler-agent >/dev/null; then
    useradd --system --user-group --home-dir /var/lib/crawler-agent --shell /sbin/nologin crawler-agent
fi
systemd-tmpfiles --create /usr/lib/tmpfiles.d/crawler-agent.conf || true
chown root:crawler-agent /etc/crawler-agent/config.toml
chmod 0640 /etc/crawler-agent/config.toml
systemctl daemon-reload >/dev/null 2>&1 || true
