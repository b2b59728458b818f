# Goinfer: the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc)
PYTEST ?= /usr/bin/python3 -m pytest
WERROR := $(if $(CI),-DGOINFER_WERROR=ON,)

.PHONY: all setup build asan run test test-unit test-integ test-asan clean

all: build

setup:
	@scripts/setup.sh all

build:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(WERROR) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS) -- --no-print-directory

asan:
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DGOINFER_SANITIZE=ON $(WERROR) >/dev/null
	@cmake --build $(ASAN_BUILD) -j$(JOBS) -- --no-print-directory

# Set-up, build, then serve: a demo model is generated when no GGUF is found.
run: setup build
	@scripts/run.sh

test: setup build asan
	@$(MAKE) --no-print-directory test-unit test-integ test-asan

test-unit:
	@ctest --test-dir $(BUILD) --output-on-failure

test-integ:
	@$(PYTEST) tests/integ -q -p no:cacheprovider

# The unit tests and the integration suite again, against the ASan+UBSan build.
test-asan:
	@ctest --test-dir $(ASAN_BUILD) --output-on-failure
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		GOINFER_BUILD=$(ASAN_BUILD) $(PYTEST) tests/integ -q -p no:cacheprovider

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
