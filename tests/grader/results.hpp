/**
 * @file results.hpp
 * @brief Graded results and the formats they are written in (human, Gradescope JSON, JUnit XML).
 */
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace muxlab::grader {

/// The verdict on one test.
struct TestOutcome {
    /// kSkipped: the environment cannot check it (no /proc access...); kNotRun:
    /// a test it needs did not pass, so it was not run (0 points).
    enum class Status { kPassed, kFailed, kSkipped, kNotRun };
    std::string test;      ///< "Suite.Test"
    Status status = Status::kFailed;
    int points = 0;        ///< points earned
    int max_points = 0;
    double seconds = 0;
    std::string message;   ///< failure or skip explanation (empty when passed); for kNotRun, why
};

/// The verdicts on one lab.
struct LabOutcome {
    std::string lab;       ///< "02-fork"
    std::string server;    ///< the binary graded
    std::vector<TestOutcome> tests;
    std::string build_error;  ///< "lab NN does not compile: ..." (empty when it built)
    int score() const;
    int max_score() const;
};

/// Totals over labs.
int total_score(const std::vector<LabOutcome>& labs);
int total_max(const std::vector<LabOutcome>& labs);

/// Writes Gradescope's results.json (score, execution_time, output, tests[]).
void write_gradescope_json(std::ostream& out, const std::vector<LabOutcome>& labs, double seconds);
/// Writes JUnit XML: one <testsuite> per lab, one <testcase> per test.
void write_junit_xml(std::ostream& out, const std::vector<LabOutcome>& labs, double seconds);

/// Writes one "lab,score,max_score,state" line per lab (state: passed, failed, not-built).
void write_scores(std::ostream& out, const std::vector<LabOutcome>& labs);

/// Escapes text for a JSON string (without the quotes).
std::string json_escape(const std::string& text);
/// Escapes text for XML content and attributes.
std::string xml_escape(const std::string& text);

}  // namespace muxlab::grader
