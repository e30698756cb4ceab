# Grading at course scale.
#
#   make grade-all SUBMISSIONS=dir [LABS=01,02] [JOBS=N] [OUT=dir]
#       grade every student folder in dir (tools/grade-all): grades.csv,
#       failures.log, junit.xml and each student's results.json in OUT
#       (default $(BUILD)/grade-all)
#   make gradescope
#       the Gradescope autograder zip, $(BUILD)/gradescope/autograder.zip
#       (tools/gradescope/README.md says how to use it)
#   make classroom [LABS=01,02]
#       regenerate .github/classroom/template/ (workflows/classroom.yml and
#       classroom/autograding.json) from the rubric: copy it into the .github/
#       folder of the assignment's template repository

SUBMISSIONS ?=
LABS        ?=
JOBS        ?=
OUT         ?=

.PHONY: grade-all gradescope classroom

grade-all: $(GRADER) $(COMMON_LIB)
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade-all SUBMISSIONS=dir [LABS=01,02] [JOBS=N] [OUT=dir]" >&2; exit 2; }
	@tools/grade-all "$(SUBMISSIONS)" --build "$(BUILD)" $(if $(LABS),--labs $(LABS)) \
	    $(if $(JOBS),--jobs $(JOBS)) $(if $(OUT),--out "$(OUT)")

gradescope:
	@tools/gradescope/make-zip --out "$(BUILD)/gradescope" $(if $(LABS),--labs $(LABS))

# The GitHub Classroom workflow and autograding.json, from the rubric.
classroom: grader
	@.github/classroom/generate $(if $(LABS),--labs $(LABS))
