# pincer — `make run` builds everything and starts the host; `make test` runs every test suite.

CARGO       ?= cargo
TARGET      := x86_64-unknown-linux-gnu
RELEASE_DIR := target/$(TARGET)/release
HOST_BIN    := $(RELEASE_DIR)/pincer
AGENT_BIN   := $(RELEASE_DIR)/pincer-agent
# One build for both binaries, both static (no libc to match at run time; the runner goes into
# the FROM-scratch agent image, see README.md): one cargo invocation, one target, one crate graph.
STATIC_FLAGS := -C target-feature=+crt-static --cfg getrandom_backend="linux_getrandom"
# Two cores: keep parallelism modest so docker and the tests keep some CPU.
TEST_THREADS ?= 2

.PHONY: run test test-faults fuzz bench image agent host build check deps clean

run: build image
	$(HOST_BIN) run

# target/release/pincer stays where the README's commands find it.
build:
	RUSTFLAGS='$(STATIC_FLAGS)' $(CARGO) build --release --target $(TARGET) --bin pincer --bin pincer-agent
	@mkdir -p target/release && ln -sf ../$(TARGET)/release/pincer target/release/pincer

host agent: build

# Builds the agent image; unchanged inputs are not rebuilt.
image: build image-deps
	$(HOST_BIN) image build --agent $(AGENT_BIN)

image-deps:
	@scripts/ensure-packages.sh busybox-static bash-static

# Test prerequisites (idempotent): packages for the image and the browser tests; selenium,
# http_ece and py-vapid (the independent checks of Web Push).
deps: image-deps
	@scripts/ensure-packages.sh chromium chromium-driver libnss3-tools nginx caddy systemd
	@scripts/ensure-python-tests.sh

test: deps image
	$(CARGO) build --bin pincer
	$(CARGO) test --lib -- --test-threads=$(TEST_THREADS)
	$(CARGO) test --test it -- --test-threads=$(TEST_THREADS)
	python3 tests/browser/test_webchat.py
	python3 tests/browser/test_push.py

# The fault suite at length: at least 20 random SIGKILLs of the host under load (the seed is
# printed; PINCER_FAULT_SEED repeats a run), plus every other fault case.
test-faults: deps image
	$(CARGO) build --bin pincer
	PINCER_FAULT_KILLS=$${PINCER_FAULT_KILLS:-25} $(CARGO) test --test it faults:: -- --test-threads=1 --nocapture

bench: deps image
	$(CARGO) bench --bench bench

check:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

clean:
	$(CARGO) clean

# Fuzzing (nightly Rust and cargo-fuzz, installed if missing): every target for FUZZ_SECONDS of
# CPU time each, one at a time; a crash stops with its input in tests/fuzz/artifacts/.
FUZZ_SECONDS ?= 900
FUZZ_TARGETS ?= http1_request ws_frames model_output anthropic_stream openai_stream cron engage_pattern multipart_form
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	for t in $(FUZZ_TARGETS); do \
	  cargo +nightly fuzz run --fuzz-dir tests/fuzz $$t tests/fuzz/corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -timeout=10 || exit 1; \
	done
