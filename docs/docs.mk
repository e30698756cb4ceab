# `make docs`: the documentation site (Doxygen) in $(BUILD)/docs.
#
# Inputs: docs/mainpage.md, notes/, labs/*/README.md, bench/README.md,
# solutions/, common/include/ and tests/harness/; pictures from
# docs/diagrams/*.dot.
# Any Doxygen warning (a broken link between pages, a bad @param, a
# diagram that does not render) fails the build: see WARN_AS_ERROR in
# Doxyfile. docs/site-links.sh names Markdown links to missing files (before
# Doxygen) and points links to files that are not pages, such as
# tests/stages/NN-name/rubric.txt, at copies inside the site (after it).

DOXYGEN     ?= doxygen
DOCS_DIR    := $(BUILD)/docs
LAB_READMES := $(sort $(wildcard labs/*/README.md))
# Other pages that live next to what they describe (added when present).
MORE_PAGES  := $(wildcard bench/README.md)
DOCS_PAGES  := docs/mainpage.md $(sort $(wildcard notes/*.md)) $(LAB_READMES) $(MORE_PAGES)

docs:
	@if [ -x tools/install-deps ]; then tools/install-deps docs; fi
	@command -v $(DOXYGEN) >/dev/null 2>&1 && command -v dot >/dev/null 2>&1 || { \
	    echo "make docs needs doxygen and graphviz (dot). On Debian/Ubuntu:" >&2; \
	    echo "    sudo apt-get install -y doxygen graphviz" >&2; exit 1; }
	@rm -rf $(DOCS_DIR) && mkdir -p $(DOCS_DIR)
	@ok=true; \
	sh docs/site-links.sh --sources $(DOCS_PAGES) || ok=false; \
	{ cat Doxyfile; \
	  echo 'INPUT += $(LAB_READMES) $(MORE_PAGES)'; \
	  echo 'OUTPUT_DIRECTORY = $(DOCS_DIR)'; } | $(DOXYGEN) - || ok=false; \
	$$ok && sh docs/site-links.sh $(DOCS_DIR) $(DOCS_PAGES) || { \
	    echo "make docs: failed, see the messages above" >&2; exit 1; }
	@echo "docs: open $(DOCS_DIR)/index.html"
