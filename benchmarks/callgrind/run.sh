#!/bin/bash
# Instructions per proxied small call in one gunicorn worker (callgrind), against nginx on
# loopback answering at once. Deterministic to ~0.1%: use it for A/B decisions on a busy machine.
#   benchmarks/callgrind/run.sh [APP_DIR] [CALLS]
# APP_DIR defaults to this tree's helpers/app; to compare with another commit:
#   git archive <commit> helpers/app | tar -x -C /tmp/old && benchmarks/callgrind/run.sh /tmp/old/helpers/app
# Needs valgrind, gcc (for toggle_collect.c), Debian's nginx (`make bench` installs nginx), and
# .venv-proxy.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../.." && pwd)
APP=$(cd "${1:-$ROOT/helpers/app}" && pwd); CALLS=${2:-200}
WORK=$(mktemp -d); trap 'cleanup' EXIT
read -r UPSTREAM_PORT PROXY_PORT < <(python3 -c "
import socket
ports = []
sockets = [socket.socket() for _ in range(2)]
for s in sockets:
    s.bind(('127.0.0.1', 0)); ports.append(s.getsockname()[1])
print(*ports)")
mkdir -p "$WORK/temp"
cat > "$WORK/nginx.conf" <<NG
daemon on; master_process on; worker_processes 1;
pid $WORK/nginx.pid; error_log $WORK/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $WORK/temp/cb; proxy_temp_path $WORK/temp/p; fastcgi_temp_path $WORK/temp/f;
  uwsgi_temp_path $WORK/temp/u; scgi_temp_path $WORK/temp/s;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$UPSTREAM_PORT; default_type application/json;
    location / { return 200 '{"experiment": {"experiment_id": "0", "name": "Default", "artifact_location": "s3://bucket/0", "lifecycle_stage": "active"}}'; }
  }
}
NG
MASTER=""
cleanup() {
  [ -n "$MASTER" ] && kill -TERM "$MASTER" 2>/dev/null || true
  [ -f "$WORK/nginx.pid" ] && /usr/sbin/nginx -p "$WORK" -c "$WORK/nginx.conf" -s stop 2>/dev/null || true
  sleep 1; rm -rf "$WORK"
}
/usr/sbin/nginx -p "$WORK" -c "$WORK/nginx.conf"
gcc -O2 -shared -fPIC -o "$WORK/toggle_collect.so" "$HERE/toggle_collect.c"
CONF=$HERE/counted_gunicorn.conf.py  # reads the measured tree's gunicorn.conf.py from its cwd
(cd "$APP" && exec env -i PATH=/usr/bin:/bin HOME="$WORK" PYTHONPATH="$APP" \
  TOGGLE_COLLECT_SO="$WORK/toggle_collect.so" \
  SM_MLFLOW_RESOURCE_ARN=arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/bench \
  SM_MLFLOW_ENDPOINT_URL=http://127.0.0.1:$UPSTREAM_PORT \
  MLFLOW_PROXY_TOKENS='[{"name":"demo","token":"demo-token-read-write","access":"read-write"}]' \
  AWS_ACCESS_KEY_ID=AKIASTANDIN000000001 AWS_SECRET_ACCESS_KEY=standinstandinstandinstandinstand \
  AWS_DEFAULT_REGION=us-east-1 AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
  AWS_EC2_METADATA_DISABLED=true MLFLOW_PROXY_ARTIFACT_STORE_URI= \
  valgrind --tool=callgrind --collect-atstart=no --vgdb=no \
    --callgrind-out-file="$WORK/callgrind.%p" \
    "$ROOT/.venv-proxy/bin/python" -m gunicorn -c "$CONF" --workers 1 \
    --bind 127.0.0.1:$PROXY_PORT 'mlflow_proxy:create_app()' >"$WORK/proxy.log" 2>&1) &
MASTER=$!
for _ in $(seq 600); do curl -sf -o /dev/null "http://127.0.0.1:$PROXY_PORT/health" && break; sleep 0.5; done
python3 "$HERE/client.py" "$PROXY_PORT" 30
python3 "$HERE/client.py" "$PROXY_PORT" "$CALLS"
kill -TERM "$MASTER"; for _ in $(seq 60); do kill -0 "$MASTER" 2>/dev/null || break; sleep 0.5; done
MASTER=""
TOTAL=$(grep -h '^totals:' "$WORK"/callgrind.* | awk '{ if ($2 > m) m = $2 } END { print m }')
echo "$APP: $((TOTAL / CALLS)) instructions per small call in the worker's handle() ($CALLS calls)"
