/**
 * @file rubric.hpp
 * @brief The rubric (tests/stages/NN-name/rubric.txt): which tests each lab runs and their points.
 */
#pragma once

#include <string>
#include <vector>

namespace muxlab::grader {

/// One graded test.
struct RubricItem {
    std::string test;                ///< GoogleTest full name, "Suite.Test"
    int points = 0;
    std::vector<std::string> needs;  ///< tests of the same lab that must pass before this one runs
};

/// One lab: its name ("02-fork") and its tests in rubric order.
struct RubricLab {
    std::string name;
    std::vector<RubricItem> items;
    int max_points() const;
};

/// The parsed rubric, labs sorted by name.
struct Rubric {
    std::vector<RubricLab> labs;

    /**
     * @brief Parses rubric text: `lab NAME` lines, then one
     *        `Suite.Test POINTS [needs Suite.A[,Suite.B]]` line per test.
     *
     * A needed test must come earlier in the same lab. On a malformed line
     * sets @p error and returns false.
     */
    bool parse(const std::string& text, std::string* error);
    /// The lab whose name is @p key or starts with "key-" ("02" finds "02-fork"); nullptr if none.
    const RubricLab* find_lab(const std::string& key) const;
    /// The lab that grades test @p test ("Suite.Test"); nullptr if none.
    const RubricLab* lab_of(const std::string& test) const;
};

/// The rubric compiled into the grader (every tests/stages/NN-name/rubric.txt at build time).
extern const char kRubricText[];

}  // namespace muxlab::grader
