# Running a course on the kit (docs/instructors.md walks through it).
#
#   make handout OUT=dir [LABS=01-05] [KIT_URL=url]
#       write (or update, as one commit) the student repository in dir: the
#       released labs, their notes, the grader with only their tests, a
#       student README; with KIT_URL, the GitHub Classroom workflow that
#       grades with the pinned kit (course/handout --help)
#   make release-solutions OUT=dir LABS=01-03
#       add those labs' reference solutions to the handout in dir, as one commit
#   make grade-all SUBMISSIONS=dir [LABS=01,02] [JOBS=N] [OUT=dir]
#       grade every student folder in dir (course/grade-all): grades.csv,
#       tests.csv, clusters.txt, failures.log, junit.xml and each student's
#       results.json in OUT (default $(BUILD)/grade-all)
#   make gradescope [LABS=03]
#       the Gradescope autograder zip, $(BUILD)/gradescope/autograder.zip
#       (course/gradescope/README.md says how to use it)
#   make classroom [LABS=01,02] [KIT_URL=url]
#       the GitHub Classroom workflow alone, in $(BUILD)/classroom/workflows/
#       (make handout writes it into the handout itself)
#   make check-setup
#       a student's first command (course/student.mk)

SUBMISSIONS ?=
LABS        ?=
JOBS        ?=
OUT         ?=
KIT_URL     ?=

.PHONY: handout release-solutions grade-all gradescope classroom

handout: $(GRADER)
	@test -n "$(OUT)" || { echo "usage: make handout OUT=dir [LABS=01-05] [KIT_URL=url]" >&2; exit 2; }
	@course/handout --out "$(OUT)" --build "$(BUILD)" $(if $(LABS),--labs $(LABS)) \
	    $(if $(KIT_URL),--kit-url "$(KIT_URL)")

release-solutions:
	@test -n "$(OUT)" && test -n "$(LABS)" || { echo "usage: make release-solutions OUT=dir LABS=01-03" >&2; exit 2; }
	@course/release-solutions --out "$(OUT)" --labs $(LABS)

grade-all: $(GRADER) $(COMMON_LIB)
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade-all SUBMISSIONS=dir [LABS=01,02] [JOBS=N] [OUT=dir]" >&2; exit 2; }
	@course/grade-all "$(SUBMISSIONS)" --build "$(BUILD)" $(if $(LABS),--labs $(LABS)) \
	    $(if $(JOBS),--jobs $(JOBS)) $(if $(OUT),--out "$(OUT)")

gradescope:
	@course/gradescope/make-zip --out "$(BUILD)/gradescope" $(if $(LABS),--labs $(LABS))

classroom: $(GRADER)
	@course/classroom/generate --out "$(BUILD)/classroom" $(if $(LABS),--labs $(LABS)) \
	    $(if $(KIT_URL),--kit-url "$(KIT_URL)")
