#!/usr/bin/env bash
# Installs and starts the MLflow proxy on an instance (Ubuntu 24.04). The user data runs it as
# root after unpacking the bundle to /opt/mlflow-proxy and writing /etc/mlflow-proxy/proxy.env.
# Needs only what Ubuntu ships (python3 3.12, curl, systemd) and, for log shipping, the
# CloudWatch agent from the regional S3 bucket: no PyPI, nothing compiled.
# Safe to run again. Exits 0 once the proxy answers /health, non-zero otherwise, so that the
# user data can signal the failure to CloudFormation.
set -euo pipefail

readonly BUNDLE_DIR=/opt/mlflow-proxy
readonly ENV_FILE=/etc/mlflow-proxy/proxy.env
readonly LOG_DIR=/var/log/mlflow-proxy
readonly SERVICE=mlflow-proxy
readonly SERVICE_USER=mlflow-proxy
# The proxy's own port (a worker answers) and the load balancer's check (the master answers:
# MLFLOW_PROXY_HEALTH_PORT in mlflow-proxy.service, HealthCheckPort in nested/proxy.yaml).
readonly HEALTH_URLS=(http://127.0.0.1:5000/health http://127.0.0.1:5001/health)
readonly HEALTH_TIMEOUT_SECONDS=${HEALTH_TIMEOUT_SECONDS:-180}
readonly CWAGENT_DIR=/opt/aws/amazon-cloudwatch-agent
readonly CWAGENT_CONFIG=$CWAGENT_DIR/etc/mlflow-proxy.json
readonly IMDS=http://169.254.169.254/latest

install -d -m 0755 "$LOG_DIR"
exec > >(tee -a "$LOG_DIR/bootstrap.log") 2>&1
echo "bootstrap: starting at $(date --iso-8601=seconds)"

fail() {
    echo "bootstrap: FAILED: $*" >&2
    exit 1
}

# The value of NAME in the systemd environment file (KEY=value, optionally quoted); empty if unset.
env_file_value() {
    local value
    value=$(sed -n "s/^[[:space:]]*$1=//p" "$ENV_FILE" | tail -n 1)
    value=${value%\"}; value=${value#\"}
    value=${value%\'}; value=${value#\'}
    printf '%s' "$value"
}

imds_get() {
    local token
    token=$(curl -fsS --retry 5 -X PUT "$IMDS/api/token" \
        -H 'X-aws-ec2-metadata-token-ttl-seconds: 300')
    curl -fsS --retry 5 -H "X-aws-ec2-metadata-token: $token" "$IMDS/$1"
}

check_inputs() {
    [[ -f $ENV_FILE ]] || fail "$ENV_FILE is missing: the user data writes it before running me"
    grep -q '^[[:space:]]*SM_MLFLOW_RESOURCE_ARN=.' "$ENV_FILE" \
        || fail "SM_MLFLOW_RESOURCE_ARN is not set in $ENV_FILE"
    [[ -f $BUNDLE_DIR/app/gunicorn.conf.py && -d $BUNDLE_DIR/vendor ]] \
        || fail "$BUNDLE_DIR does not hold the proxy bundle (app/, vendor/)"
    # The vendored wheels were chosen for Python 3.12 (helpers/Makefile).
    python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' \
        || echo "bootstrap: warning: python3 is $(python3 --version), the bundle is built for 3.12"
}

install_files() {
    id -u "$SERVICE_USER" >/dev/null 2>&1 \
        || useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$SERVICE_USER"
    # The environment file may hold caller tokens: only systemd (root) reads it.
    chown root:root "$ENV_FILE"
    chmod 0600 "$ENV_FILE"
    # The service user reads the bundle and writes nothing to it (ProtectSystem=strict), so its
    # bytecode is compiled here, once, instead of at every start.
    chown -R root:root "$BUNDLE_DIR"
    chmod -R u=rwX,go=rX "$BUNDLE_DIR"
    python3 -m compileall -q "$BUNDLE_DIR/app" "$BUNDLE_DIR/vendor" >/dev/null \
        || echo "bootstrap: warning: some bundle files did not compile; python3 will read the sources"
    install -m 0644 "$BUNDLE_DIR/mlflow-proxy.logrotate" /etc/logrotate.d/mlflow-proxy
    install -m 0644 "$BUNDLE_DIR/mlflow-proxy.service" /etc/systemd/system/mlflow-proxy.service
}

install_cloudwatch_agent() {
    local log_group region arch deb
    log_group=$(env_file_value MLFLOW_PROXY_LOG_GROUP)
    if [[ -z $log_group ]]; then
        echo "bootstrap: MLFLOW_PROXY_LOG_GROUP is not set in $ENV_FILE: logs stay on the instance"
        return
    fi
    if ! dpkg-query -W -f='${Status}' amazon-cloudwatch-agent 2>/dev/null | grep -q 'ok installed'; then
        # The regional bucket is reached through the VPC's S3 gateway endpoint: no internet needed.
        region=$(imds_get meta-data/placement/region)
        arch=$(dpkg --print-architecture)
        deb=$(mktemp --suffix=.deb)
        chmod 0644 "$deb"  # apt's sandbox user reads local packages
        curl -fsS --retry 5 -o "$deb" \
            "https://amazoncloudwatch-agent-$region.s3.$region.amazonaws.com/ubuntu/$arch/latest/amazon-cloudwatch-agent.deb" \
            || fail "could not download the CloudWatch agent from amazoncloudwatch-agent-$region (is the S3 gateway endpoint there?)"
        # apt-get, not dpkg -i: it waits for the lock unattended-upgrades holds after boot.
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q "$deb"
        rm -f "$deb"
    fi
    python3 - "$BUNDLE_DIR/amazon-cloudwatch-agent.json" "$log_group" >"$CWAGENT_CONFIG" <<'PY'
import json
import sys

template, log_group = sys.argv[1:]
with open(template) as f:
    config = json.load(f)
for collected in config["logs"]["logs_collected"]["files"]["collect_list"]:
    collected["log_group_name"] = log_group
json.dump(config, sys.stdout, indent=2)
PY
    "$CWAGENT_DIR/bin/amazon-cloudwatch-agent-ctl" -a fetch-config -m ec2 -s -c "file:$CWAGENT_CONFIG"
    echo "bootstrap: shipping logs to CloudWatch Logs group $log_group"
}

start_proxy() {
    touch "$LOG_DIR/proxy.log"
    systemctl daemon-reload
    systemctl enable "$SERVICE"
    # restart, not start: a second run after a new bundle must serve the new code.
    systemctl restart "$SERVICE"
}

wait_for_health() {
    local deadline=$((SECONDS + HEALTH_TIMEOUT_SECONDS)) url
    for url in "${HEALTH_URLS[@]}"; do
        until curl -fsS --max-time 5 -o /dev/null "$url"; do
            if ((SECONDS >= deadline)); then
                systemctl status --no-pager "$SERVICE" || true
                tail -n 50 "$LOG_DIR/proxy.log" || true
                fail "$url did not answer within ${HEALTH_TIMEOUT_SECONDS}s"
            fi
            sleep 2
        done
        echo "bootstrap: $url answers"
    done
    echo "bootstrap: the proxy is up"
}

check_inputs
install_files
install_cloudwatch_agent
start_proxy
wait_for_health
