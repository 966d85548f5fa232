systemctl daemon-reload >/dev/null 2>&1 || true
# The database in /var/lib/crawler-agent is kept; remove it by hand if it is no longer wanted.
