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
# mlflow: each gets its own virtualenv (REFERENCE.md, "Tooling on these machines").
VENV := .venv
PROXY_VENV := .venv-proxy
SAM_VENV := .venv-sam
CHECKOV_VENV := .venv-checkov
TASKCAT_VENV := .venv-taskcat

export SAM_CLI_TELEMETRY := 0
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help venv tools clients demo test test-unit test-integration test-templates test-packaging \
        test-reliability bench lint clean

help:
	@echo "make demo   run the proxy against the local SageMaker stand-in (MODE=tracking|serverless)"
	@echo "make test   run every test and gate CI runs"
	@echo "make bench  measure the proxy (not part of make test)"

$(VENV)/.installed: requirements/dev.txt helpers/app/requirements.txt
	$(PYTHON) -m venv $(VENV)
	grep -v '^gunicorn' helpers/app/requirements.txt > $(VENV)/proxy-constraints.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements/dev.txt \
	    -c $(VENV)/proxy-constraints.txt
	touch $@

$(PROXY_VENV)/.installed: helpers/app/requirements.txt
	$(PROXY_PYTHON) -m venv $(PROXY_VENV)
	$(PROXY_VENV)/bin/pip install --quiet --disable-pip-version-check -r helpers/app/requirements.txt
	touch $@

$(SAM_VENV)/.installed: requirements/sam.txt
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements/sam.txt
	touch $@

$(CHECKOV_VENV)/.installed: requirements/checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements/checkov.txt
	touch $@

$(TASKCAT_VENV)/.installed: requirements/taskcat.txt
	$(PYTHON) -m venv $(TASKCAT_VENV)
	$(TASKCAT_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements/taskcat.txt
	touch $@

# The client-version matrix (tests/integration/test_client_versions.py): one virtualenv per
# requirements/client-<version>.txt, each an MLflow client of another version than .venv's.
CLIENT_VENVS := $(patsubst requirements/client-%.txt,.venv-client-%,$(wildcard requirements/client-*.txt))

.venv-client-%/.installed: requirements/client-%.txt
	$(PYTHON) -m venv .venv-client-$*
	.venv-client-$*/bin/pip install --quiet --disable-pip-version-check -r $<
	touch $@

venv: $(VENV)/.installed $(PROXY_VENV)/.installed
clients: $(addsuffix /.installed,$(CLIENT_VENVS))
tools: $(SAM_VENV)/.installed $(CHECKOV_VENV)/.installed $(TASKCAT_VENV)/.installed

# make demo MODE=serverless; DEMO_ARGS=--exit-after-workload stops after the workload (exit code
# non-zero if it failed).
demo: venv
	$(VENV)/bin/python -m local.demo --mode $(MODE) $(DEMO_ARGS)

test: venv tools clients
	$(VENV)/bin/pytest tests

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

# nginx (Debian's package) is the non-signing reverse-proxy reference. policy-rc.d keeps the
# package from starting a system nginx on port 80: the benchmark runs its own on loopback ports.
NGINX := /usr/sbin/nginx
$(NGINX):
	printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx; \
	    status=$$?; rm -f /usr/sbin/policy-rc.d; exit $$status

bench: venv $(NGINX)
	$(VENV)/bin/python -m benchmarks

clean:
	rm -rf .aws-sam build $(VENV) $(PROXY_VENV) $(SAM_VENV) $(CHECKOV_VENV) $(TASKCAT_VENV) \
	    $(CLIENT_VENVS)
