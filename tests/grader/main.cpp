/**
 * @file main.cpp
 * @brief muxlab-grade: grades servers against the stage contracts in
 *        tests/stages/, with the points of tests/rubric.txt.
 *
 *     muxlab-grade [--labs-dir DIR] [--lab NN[,NN...]] [--server PATH]
 *                  [--only Suite.Test] [--quiet] [--json FILE] [--junit FILE]
 *                  [--expect-fail Suite.Test] [--list]
 *
 * Exit status: 0 on full marks (with --expect-fail: when that test failed),
 * 1 otherwise, 2 on a usage error.
 */
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "grader/results.hpp"
#include "grader/rubric.hpp"
#include "harness/server_process.hpp"
#include "harness/server_test.hpp"

namespace muxlab::grader {
namespace {

struct Settings {
    std::string labs_dir = "build/labs";
    std::vector<std::string> lab_keys;  // empty: every lab
    std::string server;
    std::string only;
    std::string expect_fail;
    std::string json_path;
    std::string junit_path;
    bool quiet = false;
    bool list = false;
};

[[noreturn]] void usage(const std::string& problem) {
    if (!problem.empty()) {
        std::fprintf(stderr, "muxlab-grade: %s (see muxlab-grade --help)\n", problem.c_str());
        std::exit(2);
    }
    std::fprintf(stdout,
                 "usage: muxlab-grade [--labs-dir DIR] [--lab NN[,NN...]] [--server PATH]\n"
                 "                    [--only Suite.Test] [--quiet] [--json FILE] [--junit FILE]\n"
                 "                    [--expect-fail Suite.Test] [--list]\n\n"
                 "Grades each lab's server (DIR/NN-name/server, or PATH for one lab) against\n"
                 "the stage contract. --json writes Gradescope results.json, --junit JUnit XML,\n"
                 "--quiet prints only the final Score line. Exit 0 on full marks.\n");
    std::exit(0);
}

Settings parse_settings(int argc, char** argv) {
    Settings settings;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) usage(arg + " needs a value");
            return argv[++i];
        };
        if (arg == "--help" || arg == "-h") usage("");
        else if (arg == "--labs-dir") settings.labs_dir = value();
        else if (arg == "--lab") {
            std::istringstream keys(value());
            for (std::string key; std::getline(keys, key, ',');)
                if (!key.empty() && key != "all") settings.lab_keys.push_back(key);
        } else if (arg == "--server") settings.server = value();
        else if (arg == "--only") settings.only = value();
        else if (arg == "--expect-fail") settings.expect_fail = value();
        else if (arg == "--json") settings.json_path = value();
        else if (arg == "--junit") settings.junit_path = value();
        else if (arg == "--quiet" || arg == "-q") settings.quiet = true;
        else if (arg == "--list") settings.list = true;
        else usage("unknown option '" + arg + "'");
    }
    return settings;
}

/// Colours for a terminal; empty strings otherwise.
struct Palette {
    const char* ok = "";
    const char* fail = "";
    const char* skip = "";
    const char* dim = "";
    const char* reset = "";
};

/// Follows GoogleTest as it runs and turns each result into a graded line.
class GradingListener : public ::testing::EmptyTestEventListener {
public:
    GradingListener(const Rubric& rubric, std::map<std::string, std::string> servers, bool quiet)
        : rubric_(rubric), servers_(std::move(servers)), quiet_(quiet), tty_(isatty(1) == 1) {
        if (tty_) palette_ = {"\033[32m", "\033[31m", "\033[33m", "\033[2m", "\033[0m"};
    }

    std::vector<LabOutcome> outcomes;

    void OnTestStart(const ::testing::TestInfo& info) override {
        std::string name = full_name(info);
        const RubricLab* lab = rubric_.lab_of(name);
        if (lab == nullptr) return;
        if (outcomes.empty() || outcomes.back().lab != lab->name) {
            finish_lab();
            outcomes.push_back(LabOutcome{lab->name, servers_[lab->name], {}});
            if (!quiet_) std::printf("== %s (%s)\n", lab->name.c_str(), servers_[lab->name].c_str());
        }
        test::set_server_under_test(servers_[lab->name]);
        messages_.clear();
        started_ = std::chrono::steady_clock::now();
        if (!quiet_ && tty_) {  // a progress line, replaced by the verdict
            std::printf("  %s..    %s%s", palette_.dim, name.c_str(), palette_.reset);
            std::fflush(stdout);
        }
    }

    void OnTestPartResult(const ::testing::TestPartResult& part) override {
        if (part.message() == nullptr || *part.message() == '\0') return;
        if (!messages_.empty()) messages_ += "\n";
        messages_ += part.message();
    }

    void OnTestEnd(const ::testing::TestInfo& info) override {
        std::string name = full_name(info);
        const RubricLab* lab = rubric_.lab_of(name);
        if (lab == nullptr || outcomes.empty()) return;
        TestOutcome outcome;
        outcome.test = name;
        for (const RubricItem& item : lab->items)
            if (item.test == name) outcome.max_points = item.points;
        const ::testing::TestResult* result = info.result();
        if (result->Skipped()) outcome.status = TestOutcome::Status::kSkipped;
        else if (result->Passed()) outcome.status = TestOutcome::Status::kPassed;
        else outcome.status = TestOutcome::Status::kFailed;
        outcome.points = outcome.status == TestOutcome::Status::kPassed ? outcome.max_points : 0;
        outcome.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
        outcome.message = messages_;
        outcomes.back().tests.push_back(outcome);
        if (!quiet_) print(outcome);
    }

    void OnTestProgramEnd(const ::testing::UnitTest&) override { finish_lab(); }

private:
    static std::string full_name(const ::testing::TestInfo& info) {
        return std::string(info.test_suite_name()) + "." + info.name();
    }

    void print(const TestOutcome& outcome) {
        const char* word = "FAIL";
        const char* colour = palette_.fail;
        if (outcome.status == TestOutcome::Status::kPassed) word = "OK", colour = palette_.ok;
        if (outcome.status == TestOutcome::Status::kSkipped) word = "SKIP", colour = palette_.skip;
        if (tty_) std::printf("\r\033[K");
        std::printf("  %s%-5s%s %-44s %3d/%-3d %s(%.1fs)%s\n", colour, word, palette_.reset,
                    outcome.test.c_str(), outcome.points, outcome.max_points, palette_.dim,
                    outcome.seconds, palette_.reset);
        if (!outcome.message.empty() && outcome.status != TestOutcome::Status::kPassed) {
            std::istringstream lines(outcome.message);
            for (std::string line; std::getline(lines, line);) std::printf("        %s\n", line.c_str());
        }
        std::fflush(stdout);
    }

    void finish_lab() {
        if (outcomes.empty() || printed_labs_.count(outcomes.back().lab)) return;
        printed_labs_.insert(outcomes.back().lab);
        if (!quiet_) std::printf("  %s: %d/%d\n", outcomes.back().lab.c_str(), outcomes.back().score(),
                                 outcomes.back().max_score());
    }

    const Rubric& rubric_;
    std::map<std::string, std::string> servers_;
    bool quiet_;
    bool tty_;
    Palette palette_;
    std::string messages_;
    std::set<std::string> printed_labs_;
    std::chrono::steady_clock::time_point started_;
};

/// The server for @p lab: --server, or LABS_DIR/LAB/server.
std::string server_for(const Settings& settings, const RubricLab& lab) {
    std::string path = settings.server.empty() ? settings.labs_dir + "/" + lab.name + "/server" : settings.server;
    if (path.find('/') == std::string::npos) path = "./" + path;  // execv does not search PATH
    return path;
}

}  // namespace
}  // namespace muxlab::grader

int main(int argc, char** argv) {
    using namespace muxlab::grader;
    Settings settings = parse_settings(argc, argv);
    Rubric rubric;
    std::string error;
    if (!rubric.parse(kRubricText, &error)) {
        std::fprintf(stderr, "muxlab-grade: %s\n", error.c_str());
        return 2;
    }

    std::vector<const RubricLab*> labs;
    if (settings.lab_keys.empty()) {
        for (const RubricLab& lab : rubric.labs) labs.push_back(&lab);
    } else {
        for (const std::string& key : settings.lab_keys) {
            const RubricLab* lab = rubric.find_lab(key);
            if (lab == nullptr) usage("no lab '" + key + "' in the rubric");
            labs.push_back(lab);
        }
    }
    if (!settings.server.empty() && labs.size() != 1)
        usage("--server grades one binary: name its stage with --lab NN");

    std::string filter;
    std::map<std::string, std::string> servers;
    for (const RubricLab* lab : labs) {
        servers[lab->name] = server_for(settings, *lab);
        for (const RubricItem& item : lab->items) {
            if (!settings.only.empty() && item.test != settings.only) continue;
            if (settings.list) std::printf("%-14s %-44s %d\n", lab->name.c_str(), item.test.c_str(), item.points);
            filter += (filter.empty() ? "" : ":") + item.test;
        }
    }
    if (settings.list) return 0;
    if (filter.empty()) usage("no test selected (check --only)");

    // Tests run one at a time; each server is stopped, with everything it
    // spawned, before the next test starts. As a subreaper this process
    // inherits (and so can reap) descendants that a server orphaned.
    muxlab::test::become_subreaper();
    signal(SIGPIPE, SIG_IGN);

    std::vector<char*> gtest_argv = {argv[0]};
    std::string filter_flag = "--gtest_filter=" + filter;
    gtest_argv.push_back(filter_flag.data());
    int gtest_argc = static_cast<int>(gtest_argv.size());
    gtest_argv.push_back(nullptr);
    ::testing::InitGoogleTest(&gtest_argc, gtest_argv.data());
    ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());  // our lines replace GoogleTest's
    auto* grading = new GradingListener(rubric, servers, settings.quiet);
    listeners.Append(grading);  // owned by GoogleTest from here

    auto started = std::chrono::steady_clock::now();
    int gtest_status = RUN_ALL_TESTS();  // the verdicts come from the listener
    (void)gtest_status;
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::vector<LabOutcome> outcomes = grading->outcomes;

    int score = total_score(outcomes), max = total_max(outcomes);
    std::printf("Score: %d/%d\n", score, max);
    if (!settings.json_path.empty()) {
        std::ofstream json(settings.json_path);
        write_gradescope_json(json, outcomes, seconds);
    }
    if (!settings.junit_path.empty()) {
        std::ofstream junit(settings.junit_path);
        write_junit_xml(junit, outcomes, seconds);
    }
    if (!settings.expect_fail.empty()) {
        for (const LabOutcome& lab : outcomes)
            for (const TestOutcome& test : lab.tests)
                if (test.test == settings.expect_fail) return test.status == TestOutcome::Status::kFailed ? 0 : 1;
        return 1;
    }
    return score == max ? 0 : 1;
}
