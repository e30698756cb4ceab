# A student's first command (shipped in every handout, and usable in the kit):
#
#   make check-setup    installs (or names) the packages the labs need, builds
#                       the grader, runs the harness's own tests on this
#                       machine and builds the labs; ends with "ready", or
#                       with what to fix
#
# It needs what `make grade` needs, nothing more: once it says "ready",
# `make grade` works.

CHECK_SETUP_LOG := $(BUILD)/check-setup.log

.PHONY: check-setup
check-setup: deps
	@echo "== building the grader and the harness's own tests"
	@$(MAKE) --no-print-directory -j$(NPROC) $(GRADER) $(UNIT_TESTS)
	@echo "== the harness's own tests: sockets, processes and /proc on this machine"
	@$(UNIT_TESTS) --gtest_brief=1 > $(CHECK_SETUP_LOG) 2>&1 || { \
	    tail -n 30 $(CHECK_SETUP_LOG); \
	    echo "check-setup: the test harness does not work on this machine (what failed is above;" \
	         "the whole log is $(CHECK_SETUP_LOG)). Ask your course staff, with that log." >&2; \
	    exit 1; }
	@echo "   $$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' $(CHECK_SETUP_LOG)) checks passed"
	@# Lab 05 holds 5,000 connections open at once: the grader and the server
	@# each need that many descriptors.
	@if [ "$$(ulimit -n)" != unlimited ] && [ "$$(ulimit -n)" -lt 10240 ]; then \
	    echo "   note: this shell may open only $$(ulimit -n) files; lab 05 and later need 10240:"; \
	    echo "   run 'ulimit -n 10240' (your hard limit is $$(ulimit -Hn)) before 'make grade'"; \
	fi
	@echo "== your labs"
	@if $(MAKE) --no-print-directory -k -j$(NPROC) labs > $(BUILD)/check-setup-labs.log 2>&1; then \
	    echo "   every lab builds"; \
	else \
	    echo "   some labs do not compile yet ('make labs' shows why); the grader scores those 0"; \
	fi
	@echo "ready: $$($(GRADER) --list | awk '{print $$1}' | uniq | wc -l) labs and" \
	      "$$($(GRADER) --list | wc -l) graded tests. Next: make grade LAB=01"
