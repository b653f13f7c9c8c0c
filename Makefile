# llm-router: `make run` starts routerd on etc/routerd/routerd.yaml; `make test` runs the tests.

SWIFT       ?= swift
CONFIG      ?= etc/routerd/routerd.yaml
# Where `make run` listens; the config's socket.path unless set.
SOCKET      ?=
# CI sets WERROR=1 to build with warnings as errors.
WERROR      ?=
SWIFT_FLAGS := $(if $(WERROR),-Xswiftc -warnings-as-errors,)
RELEASE_BIN := .build/release

DATA        ?= ../shared/data
TRAIN_FILES ?= $(DATA)/train/arena-bench-v1.battles.jsonl $(DATA)/train/mmlu-gold.battles.jsonl

.PHONY: all setup build run test test-python test-llm test-asan test-tsan llm-server fuzz soak eval-many eval-llm bench bench-gateway bench-fleet bench-encoder bench-learning bench-offpolicy bench-novelty bench-coldstart check-config format lint install clean weights eval

all: build

## setup: install the Debian packages the build and tests need (idempotent)
setup:
	@scripts/setup.sh

## build: build routerd, routerctl and the plugins (release)
build: setup
	$(SWIFT) build -c release $(SWIFT_FLAGS)

## run: build, then run routerd in the foreground on $(CONFIG)
run: build
	$(RELEASE_BIN)/routerd --config $(CONFIG) $(if $(SOCKET),--socket $(SOCKET),)

## check-config: validate $(CONFIG), its descriptors and plugins (like nginx -t)
check-config: build
	$(RELEASE_BIN)/routerd --check-config --config $(CONFIG)

## test: build everything (debug) and run the test suite; the test that builds a plugin package of
## its own with `swift build` runs last, alone, so its compiler does not starve the others; then the
## Python client's tests against the real daemon
test: setup
	$(SWIFT) build --build-tests $(SWIFT_FLAGS)
	$(SWIFT) test --skip-build --skip ExternalPackageTests
	$(SWIFT) test --skip-build --filter ExternalPackageTests
	$(MAKE) --no-print-directory test-python

## test-python: the Python client (clients/python) installed with pip into a virtualenv, and its
## pytest suite run against the routerd that `swift build` made
PY_VENV := .cache/py-venv
test-python:
	@test -x $(PY_VENV)/bin/pytest || (python3 -m venv $(PY_VENV) && $(PY_VENV)/bin/pip install --quiet "pytest==8.3.4")
	$(PY_VENV)/bin/pip install --quiet --force-reinstall --no-deps ./clients/python
	cd clients/python && ROUTERD_BIN=$(CURDIR)/.build/debug/routerd ../../$(PY_VENV)/bin/pytest -q

## test-asan / test-tsan: the suite (as `make test`, without the Python client's) built with AddressSanitizer
## (and LeakSanitizer) or ThreadSanitizer, in their own build folders; the daemons the tests start are the
## sanitized builds too. Suppressions, each naming its dependency and reason, are in Tests/sanitizers/
# Both suites run one test at a time (ASAN_TEST_FLAGS, TSAN_TEST_FLAGS): in parallel on 2 cores their slow
# synchronous tests hold both cooperative threads while the others' time limits run out.
# BudgetTests' replay (4,000 decisions, then 1,600 prompts through the encoder) was 78 s under ASan, a
# seventh of the suite, and SWRankingRouterTests' calibration over the shipped 7,318-prompt index 69 s;
# neither exercises a path the other ASan tests do not (sw_ranking runs under ASan on small indexes in
# OnlineLearningTests, NoveltyTests, ShadowRouterTests and ThompsonSamplingTests); `make test` runs both.
# Five more long ones are left to `make test` for CI's time: the quality router's Thompson-sampling
# replay (29 s; QualityCorrectionTests and the other QualityRouterTests run its C and plugin paths), the
# random router's APGR spread (16 s of Swift arithmetic), fifty reloads under load (13 s; the other
# HotReloadTests reload under traffic too), and the precision gate's choice in-process and the daemon
# in int8 (20 and 21 s; int8StaysWithinTheGateOfTheReference and the bf16 test run those kernels under ASan).
ASAN_TEST_FLAGS ?= --no-parallel --skip "BudgetTests|SWRankingRouterTests|aQualityRouterLearnsFromOneSidedOutcomesAndExploresByThompsonSampling|theRandomSpreadCentresOnOneHalfAndNarrowsWithMorePrompts|fiftyReloadsUnderEightPipeliningClientsLoseNothing|autoKeepsTheFastestPrecisionThatPassesTheGate|theEncoderRunsInInt8AndSaysSo"
TSAN_TEST_FLAGS ?= --no-parallel
# The ASan build leaves out the gateway (the package trait Gateway): its HTTP stack (AsyncHTTPClient,
# BoringSSL) adds minutes to a fresh build and is Swift over NIO, with no C of ours;
# `make test` runs the gateway's tests.
test-asan: setup
	$(SWIFT) build --build-tests --sanitize=address --scratch-path .build-asan --disable-default-traits $(SWIFT_FLAGS)
	ROUTERD_TEST_SANITIZER=address ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$(CURDIR)/Tests/sanitizers/lsan.supp \
		$(SWIFT) test --skip-build --sanitize=address --scratch-path .build-asan --disable-default-traits --skip ExternalPackageTests $(ASAN_TEST_FLAGS)
# TSan runs on the optimised build (-enable-testing keeps @testable imports): a debug build under TSan
# runs the encoder-heavy tests past the suite's time limits. The executables export every symbol
# (--export-dynamic) so that the plugins they dlopen, built with TSan too, find the runtime's entry
# points (__tsan_external_write and others) that swiftc's static runtime does not export on its own.
test-tsan: setup
	$(SWIFT) build -c release --build-tests --sanitize=thread -Xswiftc -enable-testing --scratch-path .build-tsan \
		-Xlinker --export-dynamic $(SWIFT_FLAGS)
	ROUTERD_TEST_SANITIZER=thread TSAN_OPTIONS=suppressions=$(CURDIR)/Tests/sanitizers/tsan.supp \
		$(SWIFT) test -c release --skip-build --sanitize=thread --scratch-path .build-tsan --skip ExternalPackageTests $(TSAN_TEST_FLAGS)

## test-llm: the causal_llm, `routerctl label` and gateway (openai SDK) tests against a real llama.cpp server with SmolLM2-135M (builds it on first use)
LLM_PORT ?= 8765
test-llm: setup
	$(SWIFT) build --build-tests $(SWIFT_FLAGS)
	scripts/llm-server.sh start $(LLM_PORT)
	ROUTERD_TEST_LLM_URL=http://127.0.0.1:$(LLM_PORT)/v1 ROUTERD_TEST_LLM_MODEL=smollm2 $(SWIFT) test --skip-build --filter "CausalLLM|LabelTests|TutorialTests|GatewayLLMTests"; \
		status=$$?; scripts/llm-server.sh stop $(LLM_PORT); exit $$status

## llm-server: start that server in the background (stop it with `scripts/llm-server.sh stop`)
llm-server:
	scripts/llm-server.sh start $(LLM_PORT)

## bench: decisions/s and latency of the random router through a real socket, next to an echo baseline
bench: build
	@scripts/bench.sh $(RELEASE_BIN)

## bench-encoder: the encoder side by side with ONNX Runtime (fp32, and its dynamic int8 as an anchor),
## cell by cell in one run (scripts/bench-encoder-ort.py); ORT comes from PyPI into a bench-only virtualenv
BENCH_VENV := .cache/bench-venv
BENCH_PACKAGES := onnxruntime==1.32.0 onnx==1.23.2 numpy==2.4.6 safetensors==0.8.0
bench-encoder: build
	@test -x $(BENCH_VENV)/bin/python || python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet $(BENCH_PACKAGES)
	$(BENCH_VENV)/bin/python scripts/bench-encoder-ort.py --routerctl $(RELEASE_BIN)/routerctl $(BENCH_ENCODER_FLAGS)

## weights: build the shipped routers' weights from ../shared/data/train (weights/*.safetensors)
ALIASES := --alias Mixtral-8x7B-Instruct-v0.1=mistralai/Mixtral-8x7B-Instruct-v0.1
weights: build
	$(RELEASE_BIN)/routerctl train mf $(TRAIN_FILES) $(ALIASES) --ties half --output weights/mf-minilm.safetensors
	$(RELEASE_BIN)/routerctl train sw_ranking $(TRAIN_FILES) $(ALIASES) --gamma 1 --neighbors 100 --weight-unit prompt --output weights/sw-ranking-minilm.safetensors
	$(RELEASE_BIN)/routerctl train quality $(TRAIN_FILES) $(ALIASES) --test-split 0 --output weights/classifier-minilm.safetensors
	$(RELEASE_BIN)/routerctl train quality $(DATA)/train/mmlu-pro.quality.jsonl --output weights/quality-minilm.safetensors

## eval: RouteLLM's APGR/CPT for the shipped routers on MT-Bench, GSM8K and MMLU (docs/results/)
eval: build
	$(RELEASE_BIN)/routerctl eval --config $(CONFIG) --routers random,mf,sw_ranking,bert --random-seeds 100 --data $(DATA)/eval --out docs/results

## eval-many: the many-model evaluation (AIQ, cost to match the best model) of the shipped
## quality router and the kNN/logistic baselines on MMLU-Pro's test share (docs/results/many-models/)
eval-many: build
	$(RELEASE_BIN)/routerctl eval --config $(CONFIG) --routers quality --benchmarks "" \
		--file $(DATA)/train/mmlu-pro.quality.jsonl --prices etc/routerd/models.yaml --baselines --out docs/results/many-models

## bench-learning: sw_ranking learning online from feedback replayed through a real routerd: APGR on an
## untouched prompt split as outcomes arrive, against an index trained offline on the same rows, with the
## feedback throughput and publish latency; then the shipped classifier learning from one outcome per prompt
## on MMLU-Pro, against its frozen weights (docs/RESULTS.md, "Learning from feedback")
bench-learning: build
	$(RELEASE_BIN)/routerctl bench-learning --quality $(DATA)/train/mmlu-pro.quality.jsonl \
		--strong gpt-4o-2024-05-13 --weak Mixtral-8x7B-Instruct-v0.1 --csv docs/results/learning/mmlu-pro.csv
	$(RELEASE_BIN)/routerctl bench-learning --scores $(DATA)/train/arena-bench-v1.scores.jsonl \
		--questions $(DATA)/train/arena-bench-v1.questions.jsonl --scale 10 \
		--strong gpt-4-1106-preview --weak Mixtral-8x7B-Instruct-v0.1 --csv docs/results/learning/arena-bench-v1.csv
	$(RELEASE_BIN)/routerctl bench-learning --quality $(DATA)/train/mmlu-pro.quality.jsonl \
		--strong gpt-4o-2024-05-13 --weak Mixtral-8x7B-Instruct-v0.1 --classifier weights/classifier-minilm.safetensors \
		--as-strong gpt-4-1106-preview --as-weak mistralai/Mixtral-8x7B-Instruct-v0.1 --one-sided explore \
		--checkpoints 0,0.05,0.2,0.5,1 --csv docs/results/learning/classifier-mmlu-pro.csv

## bench-offpolicy: how often routerctl eval --offpolicy's 95% intervals cover each router's true value, over
## ε-greedy logs replayed on held-out MMLU-Pro prompts whose every outcome is known (docs/RESULTS.md, "Off-policy evaluation")
bench-offpolicy: build
	$(RELEASE_BIN)/routerctl bench-offpolicy --file $(DATA)/train/mmlu-pro.quality.jsonl \
		--strong gpt-4o-2024-05-13 --weak Mixtral-8x7B-Instruct-v0.1 --logging mf --targets mf,sw_ranking,random

## bench-coldstart: a many-model router started with no data and taught by one outcome per replayed prompt: AIQ on
## untouched prompts at each checkpoint, against the full-information baselines, and its plot (docs/RESULTS.md)
bench-coldstart: build
	$(RELEASE_BIN)/routerctl bench-coldstart --quality $(DATA)/train/mmlu-pro.quality.jsonl --baselines \
		--plot docs/results/coldstart/mmlu-pro.svg

## bench-novelty: how familiar each benchmark's prompts are to sw_ranking, and its APGR on the less and the more
## familiar half (docs/RESULTS.md, "Novelty")
bench-novelty: build
	$(RELEASE_BIN)/routerctl bench-novelty --router sw_ranking --file $(DATA)/train/mmlu-pro.quality.jsonl

## eval-llm: every router, causal_llm included, on 500 prompts per benchmark (docs/results/with-causal-llm/)
eval-llm: build
	scripts/llm-server.sh start $(LLM_PORT)
	$(RELEASE_BIN)/routerctl eval --config etc/routerd/routerd-llm.yaml --routers random,mf,sw_ranking,bert,causal_llm --random-seeds 100 \
		--sample 500 --data $(DATA)/eval --out docs/results/with-causal-llm; \
		status=$$?; scripts/llm-server.sh stop $(LLM_PORT); exit $$status

## fuzz: libFuzzer on every parser of untrusted input (request lines, config, plugin descriptors,
## safetensors, the tokenizer, the JSON writer's round trip, the gateway's chat-completion bodies) under ASan, and UBSan over the C code
## (Swift traps on overflow and out-of-bounds itself), FUZZ_SECONDS each, or FUZZ_RUNS executions each.
## The seed corpora are in Fuzz/corpus/; what a run learns goes to .build-fuzz/corpus/, and a
## crash, leak or timeout to .build-fuzz/crashes/ (reproduce with `Fuzz/.build/$(FUZZ_CONFIG)/<target> FILE`).
FUZZ_SECONDS ?= 60
# The fuzz targets' build: release by default; CI's 6-second smoke uses debug, whose build takes
# 40 s instead of 95 s on a 2-core EPYC and which runs about half as many inputs a second.
FUZZ_CONFIG  ?= release
FUZZ_RUNS    ?=
# The longest input libFuzzer makes. 64 KiB reaches the framing's limits; 8 KiB covers every parser's
# structure at several times the speed, which is what the 10⁶-execution runs use.
FUZZ_MAX_LEN ?= 65536
FUZZ_LIMIT   := $(if $(FUZZ_RUNS),-runs=$(FUZZ_RUNS),-max_total_time=$(FUZZ_SECONDS))
FUZZ_TARGETS := FuzzRequest FuzzConfig FuzzDescriptor FuzzSafeTensors FuzzTokenizer FuzzJSONRoundTrip FuzzChatCompletion
# Targets fuzzed at once, each on its own core for FUZZ_SECONDS: the same fuzzing in less wall time.
FUZZ_JOBS    ?= 2
fuzz: setup
	# swiftc keeps only the last -sanitize= it is given, so fuzzer and address go in one flag;
	# --sanitize=fuzzer tells SwiftPM that libFuzzer provides main. swiftc has no UBSan on Linux, so
	# -fsanitize=undefined reaches the C targets only, and any finding aborts the run. Swift's own
	# backtracer is off: libFuzzer prints the stack, and the backtracer, reading an ASan process's
	# memory, hung a finding's report for minutes (a clean-clone CI run went past its time).
	cd Fuzz && $(SWIFT) build -c $(FUZZ_CONFIG) --sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address \
		-Xcc -fsanitize=fuzzer-no-link,address,undefined -Xcc -fno-sanitize-recover=undefined
	@rm -rf .build-fuzz/crashes && mkdir -p .build-fuzz/crashes
	@printf '%s\n' $(FUZZ_TARGETS) | xargs -P $(FUZZ_JOBS) -I TARGET sh -c '\
		mkdir -p .build-fuzz/corpus/TARGET; \
		echo "fuzz: TARGET ($(FUZZ_LIMIT))"; \
		SWIFT_BACKTRACE=enable=no ROUTERD_FUZZ_VOCAB=models/all-MiniLM-L6-v2/vocab.txt LSAN_OPTIONS=suppressions=Fuzz/lsan.supp UBSAN_OPTIONS=print_stacktrace=1 Fuzz/.build/$(FUZZ_CONFIG)/TARGET $(FUZZ_LIMIT) \
			-max_len=$(FUZZ_MAX_LEN) -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix=.build-fuzz/crashes/TARGET- \
			.build-fuzz/corpus/TARGET Fuzz/corpus/TARGET 2>&1 | grep --line-buffered -E "^(#[0-9]+.*(INITED|DONE|pulse)|stat::|==[0-9]+==|SUMMARY|Done)" \
			| sed -u "s/^/TARGET: /"; true'
	@for target in $(FUZZ_TARGETS); do \
		if ls .build-fuzz/crashes/$$target-* >/dev/null 2>&1; then echo "fuzz: $$target found a failure: $$(ls .build-fuzz/crashes/$$target-*)"; exit 1; fi; \
	done

## bench-gateway: the HTTP gateway beside a stub upstream called directly, and LiteLLM's proxy on the
## same stub, in one run: overhead, throughput, fallback, memory of 256 streams (docs/RESULTS.md, "The gateway")
GATEWAY_STUB_PORT ?= 18090
LITELLM_PORT ?= 18091
bench-gateway: setup
	$(SWIFT) build -c release $(SWIFT_FLAGS)
	scripts/bench-gateway-peers.sh start $(GATEWAY_STUB_PORT) $(LITELLM_PORT)
	.build/release/routerctl bench-gateway --stub-port $(GATEWAY_STUB_PORT) --peer litellm=http://127.0.0.1:$(LITELLM_PORT)/v1=bench=sk-routerd-bench-gateway $(BENCH_GATEWAY_FLAGS); \
		status=$$?; scripts/bench-gateway-peers.sh stop; exit $$status

## bench-fleet: three daemons sharing outcomes through a throwaway PostgreSQL server, and one without
## `fleet:`: route on/off, outcomes/s, replication lag, catch-up after a 60 s outage (docs/RESULTS.md, "The fleet")
bench-fleet: build
	scripts/bench-fleet.sh run $(BENCH_FLEET_FLAGS)

## soak: routerd (release, or SOAK_BUILD=debug) under SOAK_MINUTES of mixed traffic: every op, the learned
## routers on fresh and repeated prompts, bad lines, connection churn, a reload or set every 10 s with
## 1 in 5 broken; every decision checked against its generation; prints requests, errors and the RSS
## curve (docs/OPERATIONS.md, "Soak"), and fails on an unexpected error or a wrong decision
SOAK_MINUTES ?= 30
SOAK_BUILD   ?= release
soak: setup
	$(SWIFT) build $(if $(filter release,$(SOAK_BUILD)),-c release,) $(SWIFT_FLAGS)
	.build/$(SOAK_BUILD)/routerctl soak --minutes $(SOAK_MINUTES) --config $(CONFIG) $(SOAK_FLAGS)

## format / lint: swift format over the sources
format:
	$(SWIFT) format format -i -r Sources plugins Tests Package.swift
lint:
	$(SWIFT) format lint --strict -r Sources plugins Tests Package.swift

## install: binaries, plugins, config and systemd units under $(DESTDIR)$(PREFIX)
PREFIX ?= /usr/local
install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/routerd/plugins $(DESTDIR)/etc/routerd $(DESTDIR)/etc/systemd/system
	install -m 0755 $(RELEASE_BIN)/routerd $(RELEASE_BIN)/routerctl $(DESTDIR)$(PREFIX)/bin/
	for dir in plugins/*/; do \
		name=$$(basename $$dir); lib=$$(sed -n 's/^library: *//p' $$dir/plugin.yaml); \
		install -d $(DESTDIR)$(PREFIX)/lib/routerd/plugins/$$name; \
		install -m 0644 $$dir/plugin.yaml $(DESTDIR)$(PREFIX)/lib/routerd/plugins/$$name/; \
		install -m 0755 $(RELEASE_BIN)/$$lib $(DESTDIR)$(PREFIX)/lib/routerd/plugins/$$name/; \
	done
	test -e $(DESTDIR)/etc/routerd/routerd.yaml || \
		sed 's|search_paths: \[../../plugins\]|search_paths: [$(PREFIX)/lib/routerd/plugins]|' etc/routerd/routerd.yaml > $(DESTDIR)/etc/routerd/routerd.yaml
	sed 's|/usr/local/bin|$(PREFIX)/bin|g' systemd/routerd.service > $(DESTDIR)/etc/systemd/system/routerd.service
	install -m 0644 systemd/routerd.socket $(DESTDIR)/etc/systemd/system/
	install -D -m 0644 systemd/routerd.sysusers $(DESTDIR)/usr/lib/sysusers.d/routerd.conf

clean:
	rm -rf .build
