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

.PHONY: help venv tools demo smoke test test-unit test-integration test-templates test-packaging \
        test-reliability bench lint clean

help:
	@echo "make demo   run the proxy against the local SageMaker stand-in (MODE=tracking|serverless)"
	@echo "make smoke  check a deployed stack (STACK=<name> [REGION=]) or a proxy (URL= TOKEN=)"
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

venv: $(VENV)/.installed $(PROXY_VENV)/.installed
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

test: venv tools
	$(VENV)/bin/pytest tests

test-unit: venv
	$(VENV)/bin/pytest tests/unit

test-integration: venv
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
	rm -rf .aws-sam build $(VENV) $(PROXY_VENV) $(SAM_VENV) $(CHECKOV_VENV) $(TASKCAT_VENV)
