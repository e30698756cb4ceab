/**
 * @file main.cpp
 * @brief muxlab-grade: grades servers against the stage contracts in
 *        tests/stages/, with the points of tests/stages/NN-name/rubric.txt.
 *
 *     muxlab-grade [--labs-dir DIR] [--lab NN[,NN...]] [--server PATH]
 *                  [--only Suite.Test[,...]] [--quiet] [--json FILE] [--junit FILE]
 *                  [--scores FILE] [--not-built NN=LOG] [--timeout SECONDS]
 *                  [--no-sandbox] [--sandbox-uid UID] [--cpu-limit SECONDS]
 *                  [--memory-limit MIB] [--expect-fail Suite.Test] [--list]
 *
 * Every test runs in a process of its own, forked from this one, with a
 * wall-clock budget: a test that a server keeps waiting is stopped and failed
 * without losing the other results. Servers run in the sandbox described in
 * grader/sandbox.hpp (limits, another user, a private network).
 *
 * Exit status: 0 when every test passed or was skipped (with --expect-fail:
 * when that test failed with the expected message), 1 otherwise, 2 on a
 * usage error.
 */
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>

#include "grader/results.hpp"
#include "grader/rubric.hpp"
#include "grader/sandbox.hpp"
#include "harness/diagnosis.hpp"
#include "harness/server_process.hpp"
#include "harness/server_test.hpp"

namespace muxlab::grader {
namespace {

struct Settings {
    std::string labs_dir = "build/labs";
    std::vector<std::string> lab_keys;  // empty: every lab
    std::string server;
    std::set<std::string> only;  // empty: every test
    std::string expect_fail;
    std::vector<std::string> expect_messages;  // phrases the expected failure's message must contain
    std::string json_path;
    std::string junit_path;
    std::string scores_path;
    std::map<std::string, std::string> not_built;  // lab key -> compiler log
    double timeout_seconds = 60;
    bool sandbox = true;
    SandboxSettings limits;
    bool quiet = false;
    bool fail_fast = false;
    bool list = false;
};

[[noreturn]] void usage(const std::string& problem) {
    if (!problem.empty()) {
        std::fprintf(stderr, "muxlab-grade: %s (see muxlab-grade --help)\n", problem.c_str());
        std::exit(2);
    }
    std::fprintf(stdout,
                 "usage: muxlab-grade [--labs-dir DIR] [--lab NN[,NN...]] [--server PATH]\n"
                 "                    [--only Suite.Test[,...]] [--quiet] [--fail-fast] [--json FILE] [--junit FILE]\n"
                 "                    [--scores FILE] [--not-built NN=LOG] [--timeout SECONDS]\n"
                 "                    [--no-sandbox] [--sandbox-uid UID] [--cpu-limit SECONDS]\n"
                 "                    [--memory-limit MIB]\n"
                 "                    [--expect-fail Suite.Test [--expect-message TEXT]...] [--list]\n\n"
                 "Grades each lab's server (DIR/NN-name/server, or PATH for one lab) against\n"
                 "the stage contract, one line per test and a final 'Score: X/Y'.\n\n"
                 "  --json FILE        Gradescope results.json\n"
                 "  --junit FILE       JUnit XML (one testsuite per lab)\n"
                 "  --scores FILE      one 'lab,score,max_score,state' line per lab\n"
                 "  --not-built NN=LOG lab NN did not compile: 0 points, LOG as feedback\n"
                 "  --quiet            print only the Score line (nothing on stderr)\n"
                 "  --fail-fast        after a lab's first test that does not pass, report the\n"
                 "                     others as not run (the lab keeps its total)\n"
                 "  --timeout SECONDS  wall-clock budget of one test (default 60, scaled\n"
                 "                     by MUXLAB_TIME_SCALE)\n"
                 "  --no-sandbox       run servers without limits, user switch or private\n"
                 "                     network (for debugging a server under gdb or strace)\n"
                 "  --sandbox-uid UID  when run as root, run servers as UID (default: a uid\n"
                 "                     unique to this grader run)\n"
                 "  --cpu-limit S      CPU seconds per server process (default 20, scaled)\n"
                 "  --memory-limit MIB heap per server process (default 8192)\n"
                 "  --expect-fail T    (self-test) exit 0 only if test T failed, and its message\n"
                 "                     contains every --expect-message TEXT (ignoring case)\n\n"
                 "A test stops at its first failed check. A test whose rubric line says\n"
                 "`needs X` is not run (0 points) unless X passed. A test the machine cannot\n"
                 "check (no /proc access...) is skipped (0 points, not a failure).\n"
                 "Exit 0 when no test failed or was left unrun.\n");
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
        auto number = [&](const std::string& text) {
            char* end = nullptr;
            double parsed = std::strtod(text.c_str(), &end);
            if (text.empty() || *end != '\0' || parsed <= 0) usage(arg + " needs a positive number");
            return parsed;
        };
        if (arg == "--help" || arg == "-h") usage("");
        else if (arg == "--labs-dir") settings.labs_dir = value();
        else if (arg == "--lab") {
            std::istringstream keys(value());
            for (std::string key; std::getline(keys, key, ',');)
                if (!key.empty() && key != "all") settings.lab_keys.push_back(key);
        } else if (arg == "--server") settings.server = value();
        else if (arg == "--only") {
            std::istringstream tests(value());
            for (std::string test; std::getline(tests, test, ',');)
                if (!test.empty()) settings.only.insert(test);
        }
        else if (arg == "--expect-fail") settings.expect_fail = value();
        else if (arg == "--expect-message") settings.expect_messages.push_back(value());
        else if (arg == "--json") settings.json_path = value();
        else if (arg == "--junit") settings.junit_path = value();
        else if (arg == "--scores") settings.scores_path = value();
        else if (arg == "--not-built") {
            std::string pair = value();
            size_t equals = pair.find('=');
            if (equals == std::string::npos || equals == 0) usage("--not-built needs NN=LOGFILE");
            settings.not_built[pair.substr(0, equals)] = pair.substr(equals + 1);
        } else if (arg == "--timeout") settings.timeout_seconds = number(value());
        else if (arg == "--no-sandbox") settings.sandbox = false;
        else if (arg == "--sandbox-uid") settings.limits.uid = static_cast<uid_t>(number(value()));
        else if (arg == "--cpu-limit") settings.limits.cpu_seconds = static_cast<rlim_t>(number(value()));
        else if (arg == "--memory-limit") settings.limits.memory_mib = static_cast<rlim_t>(number(value()));
        else if (arg == "--quiet" || arg == "-q") settings.quiet = true;
        else if (arg == "--fail-fast") settings.fail_fast = true;
        else if (arg == "--list") settings.list = true;
        else usage("unknown option '" + arg + "'");
    }
    return settings;
}

// ---- one test, in a process of its own ---------------------------------------------

/**
 * A boolean check's message without GoogleTest's framing ("Value of: expr",
 * "Actual: false", "Expected: true", the "Failed" line of FAIL() and
 * ADD_FAILURE()), which names the test's code rather than the server's
 * behaviour; the explanation inside "Actual: false (...)" stays.
 */
std::string readable_message(const std::string& message) {
    std::istringstream lines(message);
    std::string out;
    for (std::string line; std::getline(lines, line);) {
        std::string trimmed = line.substr(std::min(line.find_first_not_of(' '), line.size()));
        if (trimmed.rfind("Value of: ", 0) == 0 || trimmed == "Expected: true" || trimmed == "Expected: false" ||
            trimmed == "Actual: false" || trimmed == "Actual: true" || trimmed == "Failed")
            continue;
        for (const char* actual : {"Actual: false (", "Actual: true ("})
            if (trimmed.rfind(actual, 0) == 0 && trimmed.back() == ')')
                trimmed = trimmed.substr(std::strlen(actual), trimmed.size() - std::strlen(actual) - 1), line = trimmed;
        out += (out.empty() ? "" : "\n") + line;
    }
    return out;
}

/// In the test process: records the verdict of the one test it runs.
class VerdictRecorder : public ::testing::EmptyTestEventListener {
public:
    char status = 0;  // 'P' passed, 'F' failed, 'S' skipped; 0: the test never ran
    std::string messages;

    void OnTestPartResult(const ::testing::TestPartResult& part) override {
        if (part.message() == nullptr || *part.message() == '\0') return;
        if (!messages.empty()) messages += "\n";
        messages += readable_message(part.message());
    }
    void OnTestEnd(const ::testing::TestInfo& info) override {
        const ::testing::TestResult* result = info.result();
        status = result->Skipped() ? 'S' : result->Passed() ? 'P' : 'F';
    }
};

/**
 * In the test process: ends the test at its first failed check. The check's
 * message says what went wrong; the checks after it would only wait on a
 * server already known to be broken (and a student reads the first problem
 * first). GoogleTest takes a testing::AssertionException thrown here as a
 * failure already reported, and still runs TearDown(), which stops the
 * server. Failures in other threads are only recorded: an exception there
 * would end the process.
 */
class StopAtFirstFailure : public ::testing::EmptyTestEventListener {
public:
    void OnTestPartResult(const ::testing::TestPartResult& part) override {
        if (!part.failed() || std::this_thread::get_id() != main_thread_) return;
        muxlab::test::note_server_state();  // while the test's clients are still connected
        // An exception that left the test body (a client that could not
        // connect) is reported from GoogleTest's own handler: the body has
        // ended already, and throwing there would skip the test's end.
        std::string_view message = part.message() ? part.message() : "";
        if (message.rfind("C++ exception", 0) == 0 || message.rfind("Unknown C++ exception", 0) == 0) return;
        throw ::testing::AssertionException(part);
    }

private:
    std::thread::id main_thread_ = std::this_thread::get_id();
};

/// The child's side: runs @p test with GoogleTest and writes "STATUS message" to @p report.
[[noreturn]] void run_test_here(const std::string& program, const std::string& test,
                                const std::string& server, int report) {
    // Orphans of the server are reparented here, so stop() can reap them.
    muxlab::test::become_subreaper();
    int null = open("/dev/null", O_RDWR);
    dup2(null, 1);  // GoogleTest and the harness have nothing to say on our terminal:
    dup2(null, 2);  // the verdict goes through the report pipe
    test::set_server_under_test(server);

    std::string filter_flag = "--gtest_filter=" + test;
    std::vector<char*> gtest_argv = {const_cast<char*>(program.c_str()), filter_flag.data(), nullptr};
    int gtest_argc = 2;
    ::testing::InitGoogleTest(&gtest_argc, gtest_argv.data());
    ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
    std::unique_ptr<::testing::TestEventListener>(listeners.Release(listeners.default_result_printer()));
    VerdictRecorder* recorder = std::make_unique<VerdictRecorder>().release();
    listeners.Append(recorder);  // owned by GoogleTest from here
    listeners.Append(std::make_unique<StopAtFirstFailure>().release());  // after the recorder: it must see the failure first
    int ignored = RUN_ALL_TESTS();
    (void)ignored;
    // What the harness saw the servers do: a violation (daemonizing) fails
    // the test; the rest (a crash, a limit) explains a failure.
    for (const test::SandboxEvent& event : test::take_sandbox_events()) {
        if (event.violation && recorder->status != 0) recorder->status = 'F';
        if (recorder->status != 'F') continue;
        if (!recorder->messages.empty()) recorder->messages += "\n";
        recorder->messages += "note: " + event.text;
    }

    constexpr size_t kMessageCap = 16 * 1024;
    std::string record(1, recorder->status == 0 ? '?' : recorder->status);
    record += recorder->messages.substr(0, kMessageCap);
    if (recorder->messages.size() > kMessageCap) record += "\n[... message cut]";
    size_t sent = 0;
    while (sent < record.size()) {
        ssize_t n = write(report, record.data() + sent, record.size() - sent);
        if (n <= 0) break;
        sent += static_cast<size_t>(n);
    }
    _exit(0);  // not exit(): the parent owns the atexit cleanups
}

/// Shows which test runs, and for how long, on a terminal.
class Progress {
public:
    Progress(bool enabled, const char* dim, const char* reset) : enabled_(enabled), dim_(dim), reset_(reset) {}
    void show(const std::string& test, double seconds) const {
        if (!enabled_) return;
        if (seconds < 1) std::printf("\r\033[K  %s..    %s%s", dim_, test.c_str(), reset_);
        else std::printf("\r\033[K  %s..    %s (%.0fs)%s", dim_, test.c_str(), seconds, reset_);
        std::fflush(stdout);
    }

private:
    bool enabled_;
    const char* dim_;
    const char* reset_;
};

/// Runs @p test against @p server in a forked process, within @p budget seconds.
TestOutcome run_test(const std::string& program, const std::string& test, const std::string& server,
                     double budget, const Progress& progress) {
    TestOutcome outcome;
    outcome.test = test;
    auto started = std::chrono::steady_clock::now();
    auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(); };
    std::fflush(stdout);
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) {
        outcome.message = std::string("grader: pipe: ") + std::strerror(errno);
        return outcome;
    }
    pid_t child = fork();
    if (child == 0) {
        ::close(report[0]);
        run_test_here(program, test, server, report[1]);
    }
    ::close(report[1]);
    if (child < 0) {
        ::close(report[0]);
        outcome.message = std::string("grader: fork: ") + std::strerror(errno);
        return outcome;
    }

    std::string record;
    bool timed_out = false;
    char buffer[4096];
    for (;;) {
        double left = budget - elapsed();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        progress.show(test, elapsed());
        pollfd p{report[0], POLLIN, 0};
        int ready = poll(&p, 1, static_cast<int>(std::min(left, 1.0) * 1000) + 1);
        if (ready < 0 && errno != EINTR) break;
        if (ready <= 0) continue;
        ssize_t n = read(report[0], buffer, sizeof buffer);
        if (n <= 0) break;  // EOF: the test process is done
        if (record.size() < (1 << 20)) record.append(buffer, static_cast<size_t>(n));
    }
    ::close(report[0]);
    if (timed_out) kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
    // Whatever the test left behind (a server that escaped its group, or all
    // of them after a timeout) was reparented to us: stop it before the next test.
    test::reap_all_children();
    outcome.seconds = elapsed();

    if (timed_out) {
        char text[200];
        std::snprintf(text, sizeof text,
                      "the test did not finish within its %.0f s budget and was stopped: the server kept "
                      "the test waiting (a reply that never came, a connection never closed?)", budget);
        outcome.message = text;
    } else if (record.size() > 1 && record[0] == '?') {
        // The test reported a failure but never reached its end.
        outcome.status = TestOutcome::Status::kFailed;
        outcome.message = record.substr(1);
    } else if (record.empty() || record[0] == '?') {
        if (WIFSIGNALED(status))
            outcome.message = std::string("grader: the test process was killed by SIG") +
                              (sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status)) : "?") +
                              " (a grader bug: please report it)";
        else
            outcome.message = "grader: no test named " + test +
                              " in this grader (the rubric and the contracts in tests/stages/ disagree: run make grader)";
    } else {
        outcome.status = record[0] == 'P'   ? TestOutcome::Status::kPassed
                         : record[0] == 'S' ? TestOutcome::Status::kSkipped
                                            : TestOutcome::Status::kFailed;
        outcome.message = record.substr(1);
    }
    return outcome;
}

// ---- the run ---------------------------------------------------------------------------

/// Colours for a terminal; empty strings otherwise.
struct Palette {
    const char* ok = "";
    const char* fail = "";
    const char* skip = "";
    const char* dim = "";
    const char* reset = "";
};

/// One line per test, then (unless it passed) its message, indented. A test
/// not run gets its one line and the reason on it.
void print_outcome(const TestOutcome& outcome, const Palette& palette, bool tty) {
    const char* word = "FAIL";
    const char* colour = palette.fail;
    if (outcome.status == TestOutcome::Status::kPassed) word = "OK", colour = palette.ok;
    if (outcome.status == TestOutcome::Status::kSkipped) word = "SKIP", colour = palette.skip;
    if (outcome.status == TestOutcome::Status::kNotRun) word = "--", colour = palette.dim;
    if (tty) std::printf("\r\033[K");
    std::printf("  %s%-5s%s %-44s %3d/%-3d ", colour, word, palette.reset, outcome.test.c_str(), outcome.points,
                outcome.max_points);
    // Messages hold what servers wrote: escape control bytes, so no server can
    // move the cursor, hide lines or fake a score on the grader's terminal.
    if (outcome.status == TestOutcome::Status::kNotRun) {
        std::printf("%snot run: %s%s\n", palette.dim, test::escape_controls(outcome.message).c_str(), palette.reset);
    } else {
        std::printf("%s(%.1fs)%s\n", palette.dim, outcome.seconds, palette.reset);
        if (!outcome.message.empty() && outcome.status != TestOutcome::Status::kPassed) {
            std::istringstream lines(test::escape_controls(outcome.message));
            for (std::string line; std::getline(lines, line);) std::printf("        %s\n", line.c_str());
        }
    }
    std::fflush(stdout);
}

/// The first lines of a compiler log (the first error is what matters).
std::string compiler_message(const std::string& log_path) {
    std::ifstream log(log_path);
    std::string text, line;
    for (int lines = 0; lines < 30 && std::getline(log, line); ++lines) {
        if (line.size() > 300) line = line.substr(0, 300) + "...";
        text += "\n    | " + line;
    }
    return text.empty() ? "\n    (no compiler output)" : text;
}

/// The server for @p lab: --server, or LABS_DIR/LAB/server.
std::string server_for(const Settings& settings, const RubricLab& lab) {
    std::string path = settings.server;
    if (path.empty()) {
        // The lab's `server`, or else its one program (lab 10's chat client).
        std::string dir = settings.labs_dir + "/" + lab.name;
        path = dir + "/server";
        std::vector<std::string> programs;
        if (DIR* listing = opendir(dir.c_str())) {
            while (dirent* entry = readdir(listing)) {
                std::string candidate = dir + "/" + entry->d_name;
                struct stat info {};
                if (entry->d_name[0] != '.' && stat(candidate.c_str(), &info) == 0 &&
                    S_ISREG(info.st_mode) && (info.st_mode & S_IXUSR))
                    programs.push_back(candidate);
            }
            closedir(listing);
        }
        if (access(path.c_str(), X_OK) != 0 && programs.size() == 1) path = programs.front();
    }
    if (path.find('/') == std::string::npos) path = "./" + path;  // execv does not search PATH
    return path;
}

/// The compiler log given with --not-built for @p lab (by "NN" or "NN-name"), or "".
std::string not_built_log(const Settings& settings, const RubricLab& lab) {
    for (const auto& [key, log] : settings.not_built)
        if (key == lab.name || lab.name.rfind(key + "-", 0) == 0) return log;
    return "";
}

/// The tests of @p lab to run: those of --only and every test they need, in rubric order.
std::set<std::string> selected_tests(const Settings& settings, const RubricLab& lab) {
    std::set<std::string> chosen;
    for (auto item = lab.items.rbegin(); item != lab.items.rend(); ++item)  // needs point backwards
        if (settings.only.empty() || settings.only.count(item->test) || chosen.count(item->test))
            chosen.insert(item->test), chosen.insert(item->needs.begin(), item->needs.end());
    return chosen;
}

/**
 * Grades @p lab test by test, in rubric order. A test whose rubric line
 * `needs` another is not run (0 points, said in one line) unless that one
 * passed; a lab that did not compile fails its first test with the
 * compiler's message and leaves the rest unrun. Either way the lab keeps
 * its full total.
 */
LabOutcome grade_lab(const Settings& settings, const RubricLab& lab, const std::string& program,
                     const Palette& palette, bool tty) {
    LabOutcome result{lab.name, server_for(settings, lab), {}, ""};
    std::string runnable = test::prepare_program(result.server);
    std::string log = not_built_log(settings, lab);
    if (!log.empty()) result.build_error = "lab " + lab.name + " does not compile:" + compiler_message(log);
    if (!settings.quiet) std::printf("== %s (%s)\n", lab.name.c_str(), result.server.c_str());

    std::set<std::string> chosen = selected_tests(settings, lab);
    std::set<std::string> passed;
    std::string first_failure;
    Progress progress(tty && !settings.quiet, palette.dim, palette.reset);
    for (const RubricItem& item : lab.items) {
        if (chosen.count(item.test) == 0) continue;
        TestOutcome outcome;
        outcome.test = item.test;
        std::string missing;
        for (const std::string& needed : item.needs)
            if (passed.count(needed) == 0) missing += (missing.empty() ? "" : ", ") + needed;
        if (!result.build_error.empty()) {
            if (result.tests.empty()) {
                outcome.status = TestOutcome::Status::kFailed;
                outcome.message = result.build_error + "\n  hint: fix the first error the compiler reports, "
                                  "then run `make labs` until it builds without warnings";
            } else {
                outcome.status = TestOutcome::Status::kNotRun;
                outcome.message = "needs the lab to compile";
            }
        } else if (settings.fail_fast && !first_failure.empty()) {
            outcome.status = TestOutcome::Status::kNotRun;
            outcome.message = "--fail-fast: " + first_failure + " did not pass";
        } else if (!missing.empty()) {
            outcome.status = TestOutcome::Status::kNotRun;
            outcome.message = "needs " + missing;
        } else {
            outcome = run_test(program, item.test, runnable, settings.timeout_seconds * test::time_scale(), progress);
        }
        outcome.max_points = item.points;
        outcome.points = outcome.status == TestOutcome::Status::kPassed ? item.points : 0;
        // A test this machine cannot check (skipped) blocks nothing: its dependents run, and skip too.
        if (outcome.status == TestOutcome::Status::kPassed || outcome.status == TestOutcome::Status::kSkipped)
            passed.insert(item.test);
        bool counts_as_failure = outcome.status == TestOutcome::Status::kFailed ||
                                 (outcome.status == TestOutcome::Status::kNotRun && missing.empty());
        if (counts_as_failure && first_failure.empty()) first_failure = item.test;
        result.tests.push_back(outcome);
        if (!settings.quiet) print_outcome(outcome, palette, tty);
    }
    if (!settings.quiet) {
        int not_run = 0, skipped = 0;
        for (const TestOutcome& test : result.tests) {
            not_run += test.status == TestOutcome::Status::kNotRun;
            skipped += test.status == TestOutcome::Status::kSkipped;
        }
        std::printf("  %s: %d/%d", lab.name.c_str(), result.score(), result.max_score());
        if (not_run > 0) std::printf("  (%d not run)", not_run);
        if (skipped > 0) std::printf("  (%d skipped: this machine could not check them)", skipped);
        std::printf("\n");
    }
    return result;
}

std::string lowercase(std::string text) {
    for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return text;
}

template <typename Writer>
void write_file(const std::string& path, Writer writer) {
    if (path.empty()) return;
    std::ofstream out(path);
    writer(out);
}

}  // namespace
}  // namespace muxlab::grader

int main(int argc, char** argv) {
    using namespace muxlab::grader;
    Settings settings = parse_settings(argc, argv);
    // Thousands of clients (lab 05) need more descriptors than a login
    // shell's usual soft limit of 1024: take what the hard limit allows.
    rlimit files{};
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
        files.rlim_cur = files.rlim_max;
        setrlimit(RLIMIT_NOFILE, &files);
    }
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
    bool any = false;
    for (const RubricLab* lab : labs)
        for (const RubricItem& item : lab->items) {
            if (!settings.only.empty() && settings.only.count(item.test) == 0) continue;
            any = true;
            if (settings.list) std::printf("%-14s %-44s %d\n", lab->name.c_str(), item.test.c_str(), item.points);
        }
    if (settings.list) return 0;
    if (!any) usage("no test selected (check --only)");

    // Tests run one at a time, each in a process of its own; every server is
    // stopped, with everything it spawned, before the next test starts. As a
    // subreaper this process inherits (and so can reap) any descendant that
    // a server or a test process orphaned.
    if (settings.sandbox) {
        SandboxReport report = enter_sandbox(settings.limits);
        if (!settings.quiet && !report.notice.empty())  // GitHub Classroom fails a test on any stderr
            std::fprintf(stderr, "muxlab-grade: %s\n", report.notice.c_str());
    }
    muxlab::test::become_subreaper();
    // Not dumpable: a server running as our own user cannot open our
    // /proc/PID/fd/1 to print a score of its own, nor trace us.
    prctl(PR_SET_DUMPABLE, 0);
    signal(SIGPIPE, SIG_IGN);

    bool tty = isatty(1) == 1;
    Palette palette;
    if (tty) palette = {"\033[32m", "\033[31m", "\033[33m", "\033[2m", "\033[0m"};
    auto started = std::chrono::steady_clock::now();
    std::vector<LabOutcome> outcomes;
    for (const RubricLab* lab : labs) outcomes.push_back(grade_lab(settings, *lab, argv[0], palette, tty));
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

    int score = total_score(outcomes), max = total_max(outcomes);
    std::printf("Score: %d/%d\n", score, max);
    std::fflush(stdout);
    write_file(settings.json_path, [&](std::ostream& out) { write_gradescope_json(out, outcomes, seconds); });
    write_file(settings.junit_path, [&](std::ostream& out) { write_junit_xml(out, outcomes, seconds); });
    write_file(settings.scores_path, [&](std::ostream& out) { write_scores(out, outcomes); });
    if (!settings.expect_fail.empty()) {
        for (const LabOutcome& lab : outcomes)
            for (const TestOutcome& test : lab.tests) {
                if (test.test != settings.expect_fail) continue;
                if (test.status != TestOutcome::Status::kFailed) return 1;
                std::string message = lowercase(test.message);
                for (const std::string& phrase : settings.expect_messages) {
                    if (message.find(lowercase(phrase)) != std::string::npos) continue;
                    std::fprintf(stderr, "muxlab-grade: %s failed, but its message does not say \"%s\"\n",
                                 test.test.c_str(), phrase.c_str());
                    return 1;
                }
                return 0;
            }
        return 1;
    }
    bool clean = true;  // nothing failed and nothing was left unrun; skips are not failures
    for (const LabOutcome& lab : outcomes)
        for (const TestOutcome& test : lab.tests)
            clean = clean && (test.status == TestOutcome::Status::kPassed || test.status == TestOutcome::Status::kSkipped);
    return clean ? 0 : 1;
}
