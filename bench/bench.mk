# `make bench`: the I/O models measured side by side (bench/run -> $(BUILD)/bench).
#
#   make bench                    every workload, medians of 3 rounds (5-8 minutes
#                                 on 2 cores, longer on a busy machine)
#   make bench QUICK=1            fewer points, one round (about 2 minutes)
#   make bench-echo               one workload; also bench-idle, bench-memory,
#                                 bench-accept, bench-chat, bench-syscalls
#   make bench PIN=1              server on CPU 1, load generator on CPU 0
#   make bench STAGES=05,07,08 REPEAT=5 BENCH_FLAGS='--duration 2'
#
# Writes tables to the terminal, CSV and SVG/PNG plots to $(BUILD)/bench.
# Not part of `make test` or CI: numbers want a quiet machine. Stages not
# built yet are skipped with a message. gnuplot (plots), redis-server (the
# outside reference for chat fan-out), libuv1-dev (an echo server on libuv,
# the outside reference for echo) and strace (syscalls per message) are
# optional: bench-deps installs them when it can, or says how.

BENCH_WORKLOADS := echo idle memory accept chat syscalls
BENCH_TOOLS     := gnuplot:gnuplot-nox redis-server:redis-server strace:strace
BENCH_ARGS       = --build $(BUILD) $(if $(QUICK),--quick) $(if $(PIN),--pin) \
                   $(if $(STAGES),--stages $(STAGES)) $(if $(REPEAT),--repeat $(REPEAT)) \
                   $(BENCH_FLAGS)

.PHONY: bench-deps bench-build $(BENCH_WORKLOADS:%=bench-%)

bench: bench-deps bench-build
	@bench/run $(BENCH_ARGS)

$(BENCH_WORKLOADS:%=bench-%): bench-deps bench-build
	@bench/run $(BENCH_ARGS) $(@:bench-%=%)

# The load generator must build; a stage that does not compile is skipped,
# and so is the libuv reference server when libuv's headers are missing.
bench-build:
	@$(MAKE) --no-print-directory -k -j$(NPROC) solutions >/dev/null 2>&1 || \
	    echo "bench: some stages did not build (make solutions shows why); they are skipped"
	@$(MAKE) --no-print-directory $(BUILD)/bench/loadgen
	@if echo '#include <uv.h>' | $(CXX) -E -x c++ - >/dev/null 2>&1; then \
	    $(MAKE) --no-print-directory $(BUILD)/bench/uv-echo; \
	else echo "bench: libuv reference skipped (Debian: sudo apt-get install -y libuv1-dev)"; fi

# The load generator is built with everything else (`make all`), so every
# compiler the kit is built with checks it too.
all: $(BUILD)/bench/loadgen

$(BUILD)/bench/loadgen: $(BUILD)/bench/loadgen.o $(COMMON_LIB)
	$(CXX) $(LDFLAGS) $^ -o $@

# An echo server on libuv, measured beside the stages (see bench/uv_echo.cpp).
$(BUILD)/bench/uv-echo: bench/uv_echo.cpp
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS) $< -o $@ -luv

bench-deps:
	@command -v python3 >/dev/null 2>&1 || { \
	    echo "make bench needs python3 (Debian: sudo apt-get install -y python3)" >&2; exit 1; }
	@missing=""; for pair in $(BENCH_TOOLS); do \
	    command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	echo '#include <uv.h>' | $(CXX) -E -x c++ - >/dev/null 2>&1 || missing="$$missing libuv1-dev"; \
	if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	        echo "bench: installing$$missing"; \
	        { apt-get install -y -q$$missing || { apt-get update -q && apt-get install -y -q$$missing; }; } \
	            >/dev/null 2>&1 || echo "bench: could not install$$missing; going on without"; \
	    else \
	        echo "bench: optional tools missing:$$missing"; \
	        echo "       (Debian/Ubuntu: sudo apt-get install -y$$missing); going on without them"; \
	    fi; \
	fi
