# The two set-up commands: `make run` and `make test` (see README.md). Each installs what is
# missing, configures, builds, then runs or tests.
BUILD    ?= build
ASAN     ?= build-asan
JOBS     ?= $(shell nproc)
TESTDATA ?= $(abspath ../shared/testdata)
MODEL    ?= models/moe-mini/moe-mini.gguf
PROMPT   ?= The history of
CODE_PROMPT ?= import os\nimport sys\n\n\ndef
SERVE    ?= 1
PORT     ?= 8080
MOE      := $(BUILD)/bin/moe

# Tests that parse untrusted bytes (model files, tokenizer input, chat templates, requests) also
# run under ASan + UBSan.
SANITIZED_TESTS ?= Gguf*:*Spm*:*Tokenizer*:Npy*:*Cli*:Jinja*:ChatTemplate*:ChatPrompt*:Safetensors*:HfModel*:MoeModel*:MoeRouter*:KQuant*:ServerApi*:ServerAuth*:ServerRateLimit*:ServerMetrics*:ServerReasoning*:ServerStopStrings*:ServerUtf8*:ServerRedact*:ServerModeration*:ServeE2E.Hostile*:ServeE2E.Auth*:DataPrepare*:TbEvents*:BpeTrain*:TrainCheckpoint*:Trainer.ConfigErrors*-TrainCheckpoint.AtomicUnderKill9

.PHONY: all deps peers build run test test-asan bench clean format

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

# The bundled model (models/moe-mini, trained here by `moe train`): a text sample and a code sample in
# the terminal, then, in an interactive terminal, `moe serve` with the chat page until Ctrl-C
# (SERVE=0 skips it).
run: build
	$(MOE) run -m $(MODEL) -p "$(PROMPT)" -n 120 --temp 0.8 --seed 42
	@echo
	$(MOE) run -m $(MODEL) -p "$$(printf '%b' '$(CODE_PROMPT)')" -n 100 --temp 0.6 --seed 42
	@echo
	@if [ "$(SERVE)" = 1 ] && [ -t 0 ]; then \
	  echo "serving $(MODEL): chat page at http://127.0.0.1:$(PORT)/ (OpenAI API under /v1), Ctrl-C stops"; \
	  $(MOE) serve -m $(MODEL) --port $(PORT); \
	fi

test-asan: deps
	@cmake -S . -B $(ASAN) -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g1" -DMOE_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN) -j$(JOBS) --target moe_tests moe
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  MOE_TESTDATA=$(TESTDATA) $(ASAN)/moe_tests --gtest_filter='$(SANITIZED_TESTS)' --gtest_brief=1

test: build peers test-asan
	MOE_TESTDATA=$(TESTDATA) ctest --test-dir $(BUILD) --output-on-failure -j$(JOBS)

# Peers (llama.cpp, Hugging Face tokenizers, Jinja) from npm into .cache/peers; benchmarks and
# the peer-comparison tests skip a peer that could not be installed.
peers:
	@scripts/install-peers.sh || echo "make: peers could not be installed; comparisons with them are skipped" >&2

bench: build peers
	@bench/run.sh $(MOE) $(TESTDATA)
	@bench/tokenizer_bench.sh $(BUILD)/bin/tokenizer_bench $(TESTDATA)
	@bench/vs_llamacpp.sh $(MOE)
	@node bench/serve_load.mjs $(MOE) $(TESTDATA)/models/stories260K.gguf
	@bench/train_vs_torch.sh $(MOE)

format:
	@clang-format -i $$(git ls-files '*.cpp' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN)
