# Two commands matter on a new machine: `make demo` and `make test`. Everything they need is
# installed here, into virtualenvs inside the checkout, from pinned requirement files.

SHELL := /bin/bash
PYTHON ?= python3.11
# The proxy's own virtualenv uses the Python of Ubuntu 24.04, where it runs on AWS.
PROXY_PYTHON ?= python3.12
# With pyenv, make every installed 3.11-3.13 reachable: python3.12 for .venv-proxy, python3.13
# for `sam build` of the Lambda functions.
export PYENV_VERSION ?= $(shell pyenv versions --bare 2>/dev/null | grep -E '^3\.1[123]\.[0-9]+$$' | sort -V | paste -sd: -)
MODE ?= tracking
DEMO_ARGS ?=

# aws-sam-cli, checkov and taskcat pin jsonschema/boto3 differently from each other and from
# mlflow: each gets its own virtualenv (docs/aws-facts.md#tooling).
VENV := .venv
PROXY_VENV := .venv-proxy
SAM_VENV := .venv-sam
CHECKOV_VENV := .venv-checkov
TASKCAT_VENV := .venv-taskcat

export SAM_CLI_TELEMETRY := 0
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help venv tools clients demo smoke test test-unit test-integration test-templates test-packaging \
        test-reliability bench clean

help:
	@echo "make demo   run the proxy against the local SageMaker stand-in (MODE=tracking|serverless)"
	@echo "make smoke  check a deployed stack (STACK=<name> [REGION=]) or a proxy (URL= TOKEN=)"
	@echo "make test   run every test and gate CI runs"
	@echo "make bench  measure the proxy (not part of make test)"

# $(call build_venv,directory,python,what it holds,about how long the first time,pip arguments)
# pip prints one line per package it collects, so a first run that downloads for minutes shows
# that it is moving; later runs find the virtualenv built and skip this.
define build_venv
	@echo "==> building $(1), $(3) (about $(4) the first time)..."
	@SECONDS=0; set -o pipefail; rm -rf $(1) && $(2) -m venv $(1) && \
	    $(1)/bin/pip install --disable-pip-version-check --progress-bar off $(5) \
	    | { grep --line-buffered -E '^(Collecting|Installing collected)' || true; } \
	    | sed -u -e 's/^Collecting \([^ ]*\).*/    collecting \1/' -e 's/^Installing.*/    installing.../' && \
	    echo "    $(1) built in $$SECONDS s"
	@touch $(1)/.installed
endef

$(VENV)/.installed: requirements/dev.txt helpers/app/requirements.txt
	$(call build_venv,$(VENV),$(PYTHON),mlflow/pytest/moto/cfn-lint for the demo and the tests,5 minutes,\
	    -r requirements/dev.txt -c <(grep -v '^gunicorn' helpers/app/requirements.txt))

$(PROXY_VENV)/.installed: helpers/app/requirements.txt
	$(call build_venv,$(PROXY_VENV),$(PROXY_PYTHON),the proxy's runtime,1 minute,\
	    -r helpers/app/requirements.txt)

$(SAM_VENV)/.installed: requirements/sam.txt
	$(call build_venv,$(SAM_VENV),$(PYTHON),AWS SAM CLI,2 to 8 minutes,-r requirements/sam.txt)

$(CHECKOV_VENV)/.installed: requirements/checkov.txt
	$(call build_venv,$(CHECKOV_VENV),$(PYTHON),checkov,2 to 10 minutes,-r requirements/checkov.txt)

$(TASKCAT_VENV)/.installed: requirements/taskcat.txt
	$(call build_venv,$(TASKCAT_VENV),$(PYTHON),taskcat,1 to 10 minutes,-r requirements/taskcat.txt)

# The client-version matrix (tests/integration/test_client_versions.py): one virtualenv per
# requirements/client-<version>.txt, each an MLflow client of another version than .venv's.
CLIENT_VENVS := $(patsubst requirements/client-%.txt,.venv-client-%,$(wildcard requirements/client-*.txt))

.venv-client-%/.installed: requirements/client-%.txt
	$(call build_venv,.venv-client-$*,$(PYTHON),an MLflow $* client for the version matrix,2 minutes,-r $<)

venv: $(VENV)/.installed $(PROXY_VENV)/.installed
clients: $(addsuffix /.installed,$(CLIENT_VENVS))
tools: $(SAM_VENV)/.installed $(CHECKOV_VENV)/.installed $(TASKCAT_VENV)/.installed

# make demo MODE=serverless; DEMO_ARGS=--exit-after-workload stops after the workload (exit code
# non-zero if it failed).
demo: venv
	$(VENV)/bin/python -m local.demo --mode $(MODE) $(DEMO_ARGS)

# make smoke STACK=<name> [REGION=<region>]: the stack's outputs and token secret with your AWS
# credentials, then the proxy with the token only (docs/operations.md, "The smoke test").
# Against `make demo`: make smoke URL=http://127.0.0.1:<port> TOKEN=<token> [READ_ONLY_TOKEN=<token>]
smoke: venv
	$(VENV)/bin/python -m smoke $(if $(STACK),--stack $(STACK)) $(if $(REGION),--region $(REGION)) \
	    $(if $(URL),--url $(URL)) $(if $(TOKEN),--token $(TOKEN)) \
	    $(if $(READ_ONLY_TOKEN),--read-only-token $(READ_ONLY_TOKEN))

# The whole suite as CI runs it, as a fresh machine would: in an order shuffled by pytest-randomly
# (the seed is printed at the top; `-p randomly --randomly-seed=N` repeats an order), and with a
# PATH of the checkout's virtualenvs, the Pythons and /usr/bin:/bin only (tests/conftest.py also
# refuses any program started from elsewhere, such as /usr/sbin/nginx).
TEST_PATH := $(CURDIR)/$(VENV)/bin:$(shell for program in $(PYTHON) $(PROXY_PYTHON) python3.13 pyenv; do \
    found=$$(command -v $$program) && dirname "$$found"; done | awk '!seen[$$0]++' | paste -sd: -):/usr/bin:/bin
test: venv tools clients
	@echo "==> running every test, in a shuffled order (5 to 20 minutes, with the machine's load; sam build and mlflow server are the slow parts)..."
	PATH="$(TEST_PATH)" $(VENV)/bin/pytest -p randomly tests

test-unit: venv
	$(VENV)/bin/pytest tests/unit

test-integration: venv clients
	$(VENV)/bin/pytest tests/integration

test-templates: venv tools
	$(VENV)/bin/pytest tests/templates

test-packaging: venv tools
	$(VENV)/bin/pytest tests/packaging

test-reliability: venv
	$(VENV)/bin/pytest tests/reliability

# Debian packages for the benchmarks (benchmarks/RESULTS.md): nginx, the non-signing
# reverse-proxy reference and the upstreams; its echo module, for the upstream that answers
# after a delay (echo_sleep); wrk, the load generator in front of it. One apt-get for all three;
# policy-rc.d keeps the package from starting a system nginx on port 80: the benchmark runs its
# own on loopback ports.
NGINX := /usr/sbin/nginx
NGINX_ECHO := /usr/lib/nginx/modules/ngx_http_echo_module.so
WRK := /usr/bin/wrk
$(NGINX) $(NGINX_ECHO) $(WRK) &:
	printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	    nginx libnginx-mod-http-echo wrk; \
	    status=$$?; rm -f /usr/sbin/policy-rc.d; exit $$status

# The proxy as it was before issue 12 (BENCH_BASELINE= for none): the delayed-upstream table
# shows it beside the checkout's. BENCH_ARGS: more options (.venv/bin/python -m benchmarks -h).
BENCH_BASELINE ?= fcbcd54
BENCH_ARGS ?=
bench: venv $(NGINX) $(NGINX_ECHO) $(WRK)
	$(VENV)/bin/python -m benchmarks $(if $(BENCH_BASELINE),--compare-with $(BENCH_BASELINE)) $(BENCH_ARGS)

clean:
	rm -rf .aws-sam build $(VENV) $(PROXY_VENV) $(SAM_VENV) $(CHECKOV_VENV) $(TASKCAT_VENV) \
	    $(CLIENT_VENVS)
