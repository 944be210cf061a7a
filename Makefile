# PCC: two commands for a newcomer. `make run` starts the controller on embedded defaults;
# `make test` runs the whole suite. Both install what they need first, idempotently.

SHELL := /bin/bash
# Debian's own Python, not a per-user one (pyenv under /root): HTCondor jobs run the venv's
# programs as the pool's unprivileged user, who must be able to execute its interpreter.
PYTHON ?= /usr/bin/python3
STATE ?= $(CURDIR)/.state
VENV ?= $(CURDIR)/.venv
export PCC_STATE_DIR := $(STATE)

# Debian 12 packages PCC needs on the host (HTCondor itself comes from condor_config/):
# the controller, then the site tool with its libvirt driver (QEMU, libvirt, the tools that
# stage disks and seeds, validate XML and check cloud-config), the test image's build, the
# multi-host pool test's network namespaces (iproute2), and
# Debian's Chromium for the web page's browser tests (Playwright drives it; it downloads none),
# and the real LibreBooking's PHP and MariaDB for the Booked connector's tests (no Composer:
# Debian's Smarty, Monolog and captcha libraries stand in for its vendor directory).
APT_PACKAGES := patchelf util-linux debian-archive-keyring ca-certificates python3 python3-venv python3-dev \
  gcc pkg-config libvirt-dev libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 \
  qemu-utils genisoimage libxml2-utils cloud-init openssh-client openssh-server cpio tini prometheus iproute2 \
  chromium fonts-dejavu-core \
  php-cli php-mysql php-mbstring php-xml php-gd php-curl php-intl mariadb-server mariadb-client smarty4 \
  php-monolog php-google-recaptcha php-gregwar-captcha

CONSTRAINTS := $(STATE)/constraints.txt
VENV_STAMP := $(VENV)/.pcc-installed

.PHONY: run test test-fast lint install apt-deps condor venv image clean-state help

help:
	@echo "make run        install what is needed, start the personal HTCondor pool and pcc serve"
	@echo "make test       install what is needed and run the whole test suite"
	@echo "make test-fast  unit tests only (no daemons)"
	@echo "make lint       ruff"

run: install
	$(VENV)/bin/pcc serve --demo

test: install
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-fast: venv
	$(VENV)/bin/pytest -m unit $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .

install: apt-deps condor venv image

# The tiny bootable test image (Debian's cloud kernel + busybox + dropbear) for the sample
# repository; cached, a no-op when up to date.
image: apt-deps
	images/build_test_image.sh images/repository/tiny

# Installs missing Debian packages (as root), or says which to install.
apt-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	  else \
	    echo "missing Debian packages:$$missing -- run: sudo apt-get install$$missing"; exit 1; \
	  fi; \
	fi

# Debian's HTCondor into $(STATE)/condor/prefix; a no-op when installed.
condor: apt-deps
	$(PYTHON) condor_config/install_condor.py --prefix $(STATE)/condor/prefix \
	  --cache $(STATE)/cache --constraints $(CONSTRAINTS)

$(CONSTRAINTS): condor

$(VENV_STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(VENV)/bin/python && $(VENV)/bin/python -c 'import sys; sys.exit(sys.base_prefix != "/usr")' \
	  || { rm -rf $(VENV); $(PYTHON) -m venv $(VENV); }
	$(VENV)/bin/pip install -q -c $(CONSTRAINTS) -e '.[controller,libvirt,ec2,opennebula,test]'
	touch $@

venv: $(VENV_STAMP)

clean-state:
	-$(VENV)/bin/pcc condor stop
	rm -rf $(STATE)
