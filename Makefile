# ODIN provisioning collection: one command to set up, one to test.
#   make setup   # .venv with pinned Python tooling and the Galaxy collections
#   make test    # everything CI runs (needs root for the Debian packages and Docker)

PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
ACTIONLINT_VERSION ?= v1.7.7

.PHONY: setup test lint sanity unit integration k8s molecule lock clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements/requirements.txt requirements/constraints.txt
	@scripts/setup-check.sh $(PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements/requirements.txt -c requirements/constraints.txt
	@# actionlint has no wheel that installs offline; it is a Go module.
	@if command -v go >/dev/null 2>&1; then \
		GOBIN=$(abspath $(BIN)) go install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION); \
	else \
		echo "go not found: actionlint will not be installed and the workflow lint stage will fail"; \
	fi
	touch $@

test: setup
	scripts/test.sh all

lint: setup
	scripts/test.sh lint

sanity: setup
	scripts/test.sh sanity

unit: setup
	scripts/test.sh unit

integration: setup
	scripts/test.sh integration

# The Kubernetes layers against the test control plane (built into ~/.cache/odin).
k8s: setup
	scripts/test.sh k8s

molecule: setup
	scripts/test.sh molecule

# Refresh constraints.txt from a clean resolve of requirements.txt.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet -r requirements/requirements.txt
	{ echo "# Exact versions for \`make setup\` (pip freeze of a working .venv on Python 3.11)."; \
	  echo "# Regenerate with \`make lock\` after changing requirements.txt."; \
	  .venv-lock/bin/pip freeze --exclude-editable; } > requirements/constraints.txt
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) .ansible .pytest_cache .ruff_cache odin-stack-*.tar.gz
