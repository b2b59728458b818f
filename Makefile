# Goinfer: the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS ?= $(shell nproc)
PYTEST ?= /usr/bin/python3 -m pytest -rfE
WERROR := $(if $(CI),-DGOINFER_WERROR=ON,)
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
DATADIR ?= $(PREFIX)/share/goinfer
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d

.PHONY: all setup setup-run build install install-files uninstall asan fuzz-build run run-tunnel test test-unit test-integ test-asan test-fuzz fuzz clean format check check-format check-layers

all: build

# make run installs only what running needs; make test (and make setup, for CI) the test tools too.
setup:
	@scripts/setup.sh test

setup-run:
	@scripts/setup.sh run

build:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(WERROR) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS) -- --no-print-directory

asan:
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DGOINFER_SANITIZE=ON $(WERROR) >/dev/null
	@cmake --build $(ASAN_BUILD) -j$(JOBS) -- --no-print-directory

# libFuzzer targets need clang; their corpora are replayed by make test.
fuzz-build:
	@CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DGOINFER_SANITIZE=ON -DGOINFER_FUZZ=ON $(WERROR) >/dev/null
	@cmake --build $(FUZZ_BUILD) -j$(JOBS) -- --no-print-directory

# Set-up, build, then serve: a demo model is generated when no GGUF is found.
run: setup-run build
	@scripts/run.sh

# Server/client mode on one machine: a server and a GPU client in two network namespaces.
run-tunnel: setup-run build
	@scripts/run-tunnel.sh

test: setup check build asan fuzz-build
	@$(MAKE) --no-print-directory test-unit test-integ test-asan test-fuzz

# make test fails on a C file that clang-format would change (`make format` fixes them), and on
# folders of src/ that include each other or <yaml.h> outside the config loader.
check: check-format check-layers

check-format:
	@tools/check-format.sh

check-layers:
	@/usr/bin/python3 tools/check-layers.py

format:
	@git ls-files -z -- 'src/*.[ch]' 'tests/unit/*.c' 'tests/fuzz/*.c' 'tools/*.c' 'bench/*.c' | xargs -0 clang-format -i

test-unit:
	@ctest --test-dir $(BUILD) --output-on-failure

test-integ:
	@$(PYTEST) tests/integ -q -p no:cacheprovider

# The unit tests and the integration suite again, against the ASan+UBSan build.
test-asan:
	@ctest --test-dir $(ASAN_BUILD) --output-on-failure
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		GOINFER_BUILD=$(ASAN_BUILD) $(PYTEST) tests/integ -q -p no:cacheprovider

test-fuzz:
	@ctest --test-dir $(FUZZ_BUILD) --output-on-failure -R '^fuzz_'

# Runs each fuzz target for FUZZ_SECONDS (default 60) on its corpus, adding what it finds.
fuzz: fuzz-build
	@for f in $(FUZZ_BUILD)/fuzz_*; do \
		t=$${f##*/fuzz_}; echo "fuzzing $$t for $${FUZZ_SECONDS:-60} s"; \
		$$f -max_total_time=$${FUZZ_SECONDS:-60} tests/fuzz/corpus/$$t 2>&1 | tail -3; \
	done

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)

# The binary (web assets embedded), goinfer(1), an example config and the systemd unit with its
# user; DESTDIR for packaging. Installed for real (no DESTDIR), the goinfer user is created.
# install-files installs $(BUILD)'s binary as it is (the tests: no rebuild of the build under test).
install: build
	@$(MAKE) --no-print-directory install-files

install-files:
	install -D -m 0755 $(BUILD)/goinfer $(DESTDIR)$(BINDIR)/goinfer
	install -D -m 0644 dist/goinfer.1 $(DESTDIR)$(MANDIR)/man1/goinfer.1
	install -D -m 0644 dist/goinfer.example.yml $(DESTDIR)$(DATADIR)/goinfer.example.yml
	install -D -m 0644 dist/goinfer.sysusers $(DESTDIR)$(SYSUSERSDIR)/goinfer.conf
	mkdir -p $(DESTDIR)$(UNITDIR)
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@DATADIR@|$(DATADIR)|g' dist/goinfer.service \
		> $(DESTDIR)$(UNITDIR)/goinfer.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/goinfer.service
	@if [ -z "$(DESTDIR)" ] && command -v systemd-sysusers >/dev/null; then \
		systemd-sysusers $(SYSUSERSDIR)/goinfer.conf; fi
	@if [ -z "$(DESTDIR)" ]; then echo "next: install -D -m 0640 -g goinfer $(DATADIR)/goinfer.example.yml /etc/goinfer/goinfer.yml, edit it, systemctl enable --now goinfer"; fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/goinfer $(DESTDIR)$(MANDIR)/man1/goinfer.1 \
		$(DESTDIR)$(DATADIR)/goinfer.example.yml $(DESTDIR)$(SYSUSERSDIR)/goinfer.conf \
		$(DESTDIR)$(UNITDIR)/goinfer.service
