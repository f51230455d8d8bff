# memtap: `make` builds build/memtap and build/libmemtap.so; `make check` runs
# every test; `make demo` shows the product; `make bench` measures it.
# V=1 shows full commands.

PREFIX ?= /usr/local
BUILD := build
CC ?= cc
CFLAGS ?= -O2 -g
WARN := -Wall -Wextra -Werror -Wno-format-truncation
BASE_CFLAGS := -std=gnu11 $(WARN) -Iinclude -D_GNU_SOURCE -fno-strict-aliasing
AGENT_CFLAGS := $(BASE_CFLAGS) -fPIC -fvisibility=hidden -fexceptions -ftls-model=initial-exec
AGENT_LDFLAGS := -shared -Wl,--version-script=$(BUILD)/gen/exports.map -Wl,-z,relro,-z,now -Wl,-Bsymbolic-functions \
	-Wl,--no-undefined
LIBS := -lz -lm

ifeq ($(V),1)
Q :=
msg := @true
else
Q := @
msg := @printf '  %-8s %s\n'
endif

.DELETE_ON_ERROR:
# Generated sources are kept: make would delete them as intermediates, and a
# concurrent build would then miss them.
.SECONDARY:
.PHONY: all deps check demo bench install clean unit fixtures sanitize tsan fuzz

CORE_SRC := $(wildcard src/core/*.c)
AGENT_SRC := $(wildcard src/agent/*.c)
AGENT_ASM := $(wildcard src/agent/*.S)
RENDER_SRC := $(wildcard src/render/*.c) $(wildcard src/symbolize/*.c)
CLI_SRC := $(wildcard src/cli/*.c)
# The eBPF backend: src/bpf/memtap.bpf.c becomes build/gen/memtap.skel.h, which
# the user-space side (the other src/bpf/*.c, part of the CLI) includes.
CLI_SRC += $(filter-out %.bpf.c,$(wildcard src/bpf/*.c))
BPFTOOL ?= $(or $(shell command -v bpftool 2>/dev/null),/usr/sbin/bpftool)
BPF_CLANG ?= clang
# The ptrace injector: part of the CLI, and of LIB_OBJ so unit tests can reach it.
INJECT_SRC := $(wildcard src/inject/*.c)
# Protocol buffers (pprof's profile.proto) compiled by protoc-c into build/gen.
PROTO_SRC := $(wildcard src/render/*.proto)
PROTO_C := $(PROTO_SRC:src/render/%.proto=$(BUILD)/gen/%.pb-c.c)
PROTO_H := $(PROTO_C:.c=.h)
HEADERS := $(wildcard include/memtap/*.h include/memtap/*.def src/agent/*.h src/agent/*.def src/cli/*.h src/render/*.h \
	src/symbolize/*.h) $(PROTO_H)

AGENT := $(BUILD)/libmemtap.so
CLI := $(BUILD)/memtap
DEMO := $(BUILD)/memtap-demo-workload
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit/%)
FIXTURE_SRC := $(wildcard tests/fixtures/*.c tests/fixtures/*.cc)
# tests/fixtures/lib*.c are libraries, not programs: they have rules of their own.
FIXTURE_SRC := $(filter-out tests/fixtures/lib%.c,$(FIXTURE_SRC))
FIXTURES := $(patsubst tests/fixtures/%,$(BUILD)/tests/fixtures/%,$(basename $(FIXTURE_SRC)))

all: $(CLI) $(AGENT) $(DEMO)

$(BUILD)/agent/%.o: src/%.c $(HEADERS)
	$(msg) CC $@
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(AGENT_CFLAGS) -c $< -o $@

$(BUILD)/agent/%.o: src/%.S
	$(msg) AS $@
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(AGENT_CFLAGS) -c $< -o $@

$(BUILD)/cli/%.o: src/%.c $(HEADERS)
	$(msg) CC $@
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(SAN) $(BASE_CFLAGS) -Isrc -I$(BUILD)/gen -c $< -o $@

$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: src/render/%.proto
	$(msg) PROTOC $@
	@mkdir -p $(BUILD)/gen
	$(Q)protoc-c --proto_path=src/render --c_out=$(BUILD)/gen $<

# vmlinux.h comes from the running kernel's BTF (not committed); the BPF
# object from clang; the skeleton, which embeds it, from bpftool.
$(BUILD)/gen/vmlinux.h:
	$(msg) BTF $@
	@mkdir -p $(BUILD)/gen
	$(Q)$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@

$(BUILD)/gen/memtap.bpf.o: src/bpf/memtap.bpf.c src/bpf/memtap_bpf.h include/memtap/funcs.def $(BUILD)/gen/vmlinux.h
	$(msg) BPF $@
	$(Q)$(BPF_CLANG) -O2 -g -Wall -Werror -target bpf -D__TARGET_ARCH_x86 -I$(BUILD)/gen -Isrc/bpf -Iinclude \
		-c $< -o $@

$(BUILD)/gen/memtap.skel.h: $(BUILD)/gen/memtap.bpf.o
	$(msg) SKEL $@
	$(Q)$(BPFTOOL) gen skeleton $< name memtap_bpf > $@

$(BUILD)/cli/bpf/loader.o: $(BUILD)/gen/memtap.skel.h
$(filter $(BUILD)/cli/bpf/%,$(CLI_SRC:src/%.c=$(BUILD)/cli/%.o)) $(BUILD)/cli/cli/cmd_attach.o: \
	$(wildcard src/bpf/*.h)

$(BUILD)/gen/%.pb-c.o: $(BUILD)/gen/%.pb-c.c
	$(msg) CC $@
	$(Q)$(CC) $(CFLAGS) -std=gnu11 -Wall -Werror -I$(BUILD)/gen -c $< -o $@

AGENT_OBJ := $(patsubst src/%.c,$(BUILD)/agent/%.o,$(AGENT_SRC) $(CORE_SRC)) \
	$(patsubst src/%.S,$(BUILD)/agent/%.o,$(AGENT_ASM))
LIB_OBJ := $(patsubst src/%.c,$(BUILD)/cli/%.o,$(RENDER_SRC) $(CORE_SRC) $(INJECT_SRC)) $(PROTO_C:.c=.o)
CLI_OBJ := $(patsubst src/%.c,$(BUILD)/cli/%.o,$(CLI_SRC)) $(LIB_OBJ)
CLI_LIBS := $(LIBS) -lelf -ldw -liberty -lncursesw $(if $(PROTO_SRC),-lprotobuf-c) -lbpf -lZydis

# The export map, from the one list of traced functions.
$(BUILD)/gen/exports.map: src/agent/exports.map.in include/memtap/funcs.def
	$(msg) GEN $@
	@mkdir -p $(BUILD)/gen
	$(Q)$(CC) -E -P -x c -Iinclude $< -o $@

$(AGENT): $(AGENT_OBJ) $(BUILD)/gen/exports.map
	$(msg) LD $@
	$(Q)$(CC) $(CFLAGS) $(AGENT_LDFLAGS) $(AGENT_OBJ) -o $@ -ldl -lpthread $(LIBS)

$(CLI): $(CLI_OBJ)
	$(msg) LD $@
	$(Q)$(CC) $(CFLAGS) $(SAN) $(CLI_OBJ) -o $@ $(CLI_LIBS)

$(DEMO): demo/workload.c
	$(msg) CC $@
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) $< -o $@ -lpthread

$(BUILD)/tests/unit/%: tests/unit/%.c $(LIB_OBJ) $(HEADERS)
	$(msg) CC $@
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(SAN) $(BASE_CFLAGS) -Isrc -I$(BUILD)/gen $< $(LIB_OBJ) $(UNIT_EXTRA) -o $@ -lcmocka $(CLI_LIBS)

# The -f planner is CLI code (and its object lookup the eBPF backend's).
$(BUILD)/tests/unit/test_funcs: UNIT_EXTRA := $(BUILD)/cli/cli/funcs.o $(BUILD)/cli/bpf/objects.o
$(BUILD)/tests/unit/test_funcs: $(BUILD)/cli/cli/funcs.o $(BUILD)/cli/bpf/objects.o

$(BUILD)/tests/fixtures/%: tests/fixtures/%.c tests/fixtures/read_line.h
	$(msg) CC $@
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) -Wno-unused-result $< -o $@ -lpthread -ldl

# --stacks with --via=ebpf walks frame pointers: this fixture keeps them.
$(BUILD)/tests/fixtures/fp_stacks: CFLAGS += -fno-omit-frame-pointer

# -f entry hooks on a non-PIE program whose functions start with endbr64.
FIXTURES += $(BUILD)/tests/fixtures/entry_hooks_nopie
$(BUILD)/tests/fixtures/entry_hooks_nopie: tests/fixtures/entry_hooks.c tests/fixtures/read_line.h
	$(msg) CC $@
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) -fno-pie -no-pie -fcf-protection=full $< -o $@ -lpthread

# ... and stripped, its symbols in a separate debug file (.gnu_debuglink):
# -f finds a static function through it.
FIXTURES += $(BUILD)/tests/fixtures/stripped/entry_hooks
$(BUILD)/tests/fixtures/stripped/entry_hooks: $(BUILD)/tests/fixtures/entry_hooks
	$(msg) STRIP $@
	@mkdir -p $(dir $@)
	$(Q)objcopy --only-keep-debug $< $@.debug
	$(Q)objcopy --strip-all --add-gnu-debuglink=$@.debug $< $@

$(BUILD)/tests/fixtures/%: tests/fixtures/%.cc
	$(msg) CXX $@
	@mkdir -p $(dir $@)
	$(Q)$(CXX) $(CFLAGS) -std=gnu++17 $(WARN) $< -o $@ -lpthread

# Symbolization fixtures: the library test_symbolize dlopen()s, a copy with its
# DWARF in a separate file (.gnu_debuglink) and the same code as a non-PIE
# program.  -g whatever CFLAGS says: the test checks lines.
SYMFIX := $(BUILD)/tests/fixtures/libsymfix.so $(BUILD)/tests/fixtures/stripped/libsymfix.so \
	$(BUILD)/tests/fixtures/symfix_nopie
FIXTURES += $(SYMFIX)

$(BUILD)/tests/fixtures/libsymfix.so: tests/fixtures/libsymfix.c
	$(msg) CC $@
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -g $(BASE_CFLAGS) -fPIC -shared $< -o $@

$(BUILD)/tests/fixtures/stripped/libsymfix.so: $(BUILD)/tests/fixtures/libsymfix.so
	$(msg) STRIP $@
	@mkdir -p $(dir $@)
	$(Q)objcopy --only-keep-debug $< $@.debug
	$(Q)objcopy --strip-debug --add-gnu-debuglink=$@.debug $< $@

$(BUILD)/tests/fixtures/symfix_nopie: tests/fixtures/libsymfix.c
	$(msg) CC $@
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -g $(BASE_CFLAGS) -DSYMFIX_MAIN -fno-pie -no-pie $< -o $@

# (BASE_CFLAGS, not CFLAGS: a CFLAGS given on the command line would win.)
$(BUILD)/tests/unit/test_symbolize: private BASE_CFLAGS += -g
$(BUILD)/tests/unit/test_symbolize: $(SYMFIX)

# The injector's test library and driver (tests/integration/90-inject.t).
INJFIX := $(BUILD)/tests/fixtures/libinject_probe.so
FIXTURES += $(INJFIX)

$(BUILD)/tests/fixtures/libinject_probe.so: tests/fixtures/libinject_probe.c
	$(msg) CC $@
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) -fPIC -shared $< -o $@

$(BUILD)/tests/fixtures/inject_tool: tests/fixtures/inject_tool.c $(INJECT_SRC) include/memtap/inject.h
	$(msg) CC $@
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) $< $(INJECT_SRC) src/core/proc.c -o $@ -lelf

unit: $(UNIT)
fixtures: $(FIXTURES)

deps:
	@sh scripts/deps.sh build test

check: deps
	@sh scripts/deps.sh peers || echo "memtap: some peer programs could not be installed; their tests will skip"
	@$(MAKE) --no-print-directory tsan
	@$(MAKE) --no-print-directory sanitize
	@$(MAKE) --no-print-directory all unit fixtures
	@sh tests/run.sh

# The CLI, renderers and unit tests under AddressSanitizer and
# UndefinedBehaviorSanitizer, in build-san/ (SAN only reaches the CLI side:
# the agent, preloaded into other programs, cannot carry the ASan runtime).
# Runs the unit tests and the tests that drive the renderers hardest.
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
SAN_TESTS := tests/integration/40-report.t tests/integration/70-exports.t tests/integration/80-stacks.t
sanitize:
	@$(MAKE) --no-print-directory BUILD=build-san SAN="$(SAN_FLAGS)" all unit fixtures
	@echo "sanitize: unit tests and $(SAN_TESTS) with an ASan+UBSan CLI"
	@cd . && MEMTAP_BUILD=build-san CMOCKA_MESSAGE_OUTPUT=TAP ASAN_OPTIONS=detect_leaks=1 \
		prove --exec '' build-san/tests/unit/test_* $(SAN_TESTS)

# The agent's concurrency under ThreadSanitizer, in build-tsan/.  The agent
# itself cannot be built with TSan (TSan interposes malloc too), so its
# sources minus interpose.c (tests/tsan/stubs.c stands in) become a TSan
# library that tests/tsan/test_agent.c drives from many threads; a race or a
# wrong total fails.  tests/tsan/run.sh runs one process per test.
TSAN := build-tsan
TSAN_FLAGS := -fsanitize=thread -fno-omit-frame-pointer
TSAN_CFLAGS := $(BASE_CFLAGS) -Isrc/agent -fPIC -fexceptions -ftls-model=initial-exec
TSAN_AGENT_SRC := $(filter-out src/agent/interpose.c,$(AGENT_SRC)) $(CORE_SRC) tests/tsan/stubs.c
TSAN_AGENT_OBJ := $(patsubst %.c,$(TSAN)/obj/%.o,$(TSAN_AGENT_SRC)) $(patsubst %.S,$(TSAN)/obj/%.o,$(AGENT_ASM))
TSAN_TEST := $(TSAN)/tests/tsan/test_agent

$(TSAN)/obj/%.o: %.c $(HEADERS)
	$(msg) CC $@
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(TSAN_FLAGS) $(TSAN_CFLAGS) -c $< -o $@

$(TSAN)/obj/%.o: %.S
	$(msg) AS $@
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(TSAN_CFLAGS) -c $< -o $@

$(TSAN)/libmemtap-tsan.so: $(TSAN_AGENT_OBJ)
	$(msg) LD $@
	$(Q)$(CC) $(CFLAGS) $(TSAN_FLAGS) -shared -Wl,--no-undefined $^ -o $@ -ldl -lpthread $(LIBS)

$(TSAN_TEST): tests/tsan/test_agent.c $(TSAN)/libmemtap-tsan.so $(HEADERS)
	$(msg) CC $@
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(TSAN_FLAGS) $(BASE_CFLAGS) -Isrc/agent $< -o $@ -L$(TSAN) -lmemtap-tsan \
		-Wl,-rpath,'$$ORIGIN/../..' -lpthread

tsan: $(TSAN_TEST)
	@echo "tsan: the agent's counting, snapshots, reset, gate, call sites, control thread and attach under ThreadSanitizer"
	@MEMTAP_TSAN_BIN=$(TSAN_TEST) prove -v --exec '' tests/tsan/run.sh

# libFuzzer (clang) on the profile reader + renderers, the control protocol
# parser, the live counter file reader and the endpoint's HTTP server,
# FUZZ_SECONDS each, from the seed
# corpus in tests/fuzz.
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -std=gnu11 -Iinclude -Isrc -D_GNU_SOURCE
fuzz: all
	@mkdir -p $(BUILD)/fuzz
	$(BPF_CLANG) $(FUZZ_CFLAGS) -I$(BUILD)/gen tests/fuzz/fuzz_profile.c $(RENDER_SRC) $(CORE_SRC) \
		$(PROTO_C) -o $(BUILD)/fuzz/fuzz_profile $(CLI_LIBS)
	$(BPF_CLANG) $(FUZZ_CFLAGS) tests/fuzz/fuzz_ctl.c src/core/ctl.c -o $(BUILD)/fuzz/fuzz_ctl
	$(BPF_CLANG) $(FUZZ_CFLAGS) -I$(BUILD)/gen tests/fuzz/fuzz_live.c src/cli/live_read.c $(RENDER_SRC) \
		$(CORE_SRC) $(PROTO_C) -o $(BUILD)/fuzz/fuzz_live $(CLI_LIBS)
	$(BPF_CLANG) $(FUZZ_CFLAGS) tests/fuzz/fuzz_http.c src/cli/http.c -o $(BUILD)/fuzz/fuzz_http
	@for t in profile ctl live http; do \
		rm -rf $(BUILD)/fuzz/corpus-$$t && cp -r tests/fuzz/corpus/$$t $(BUILD)/fuzz/corpus-$$t && \
		echo "fuzz: $$t for $(FUZZ_SECONDS) s" && \
		$(BUILD)/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			$(BUILD)/fuzz/corpus-$$t 2>&1 | tail -4 || exit 1; \
	done

demo:
	@sh scripts/deps.sh build
	@$(MAKE) --no-print-directory all
	$(CLI) demo

bench: deps
	@$(MAKE) --no-print-directory all fixtures
	@sh bench/run.sh
	@sh bench/callgrind.sh
	@bash bench/attach.sh
	@bash bench/hooks.sh
	@bash bench/fleet.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/memtap
	install -m 0755 $(CLI) $(DESTDIR)$(PREFIX)/bin/memtap
	install -m 0755 $(AGENT) $(DEMO) $(DESTDIR)$(PREFIX)/lib/memtap/

clean:
	rm -rf $(BUILD) build-san build-tsan
