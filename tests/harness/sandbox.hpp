/**
 * @file sandbox.hpp
 * @brief The limits every server under test runs with, and what the harness
 *        saw a server do that a student should hear about.
 *
 * A submission is untrusted code. These limits keep a broken or hostile one
 * (a fork bomb, a busy loop, endless logging, a memory hog) from hanging the
 * grader or harming the machine; they are far above what a correct server
 * needs. The grader sets them once (grader/sandbox.hpp decides the values);
 * the default Sandbox limits nothing (the harness's own unit tests).
 */
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace muxlab::test {

/// The cage every server runs in, whatever the test.
struct Sandbox {
    std::optional<rlim_t> cpu_seconds;     ///< RLIMIT_CPU per process (SIGXCPU, then SIGKILL)
    std::optional<rlim_t> max_processes;   ///< RLIMIT_NPROC: counted per real uid, ignored for root
    std::optional<rlim_t> data_bytes;      ///< RLIMIT_DATA (heap and private mappings); not for sanitizer builds
    std::optional<rlim_t> file_bytes;      ///< RLIMIT_FSIZE: largest file the server may write
    bool no_core_dumps = false;            ///< RLIMIT_CORE 0: a crash costs no time or disk
    bool first_to_die = false;             ///< oom_score_adj 1000: the OOM killer picks the server first
    std::optional<uid_t> uid;              ///< run the server as this uid (needs root; also sets gid)
    std::optional<gid_t> gid;              ///< with uid: the server's gid
};

/// Sets the sandbox for every server started from now on.
void set_sandbox(const Sandbox& sandbox);
/// The current sandbox.
const Sandbox& sandbox();

/// Limits one test asks for, on top of the sandbox (a test's value wins).
struct TestLimits {
    std::optional<rlim_t> max_open_files; ///< RLIMIT_NOFILE
    std::optional<rlim_t> cpu_seconds;    ///< RLIMIT_CPU
    std::optional<rlim_t> max_processes;  ///< RLIMIT_NPROC
    std::optional<rlim_t> address_space;  ///< RLIMIT_AS in bytes
};

/**
 * @brief What a forked child applies before exec: computed in the parent,
 *        because the child of a threaded process may not allocate.
 */
struct ChildPlan {
    std::vector<std::pair<int, rlim_t>> limits;  ///< (RLIMIT_*, value)
    bool first_to_die = false;
    bool switch_user = false;
    uid_t uid = 0;
    gid_t gid = 0;
};

/// The plan for running @p program under sandbox() with @p limits.
ChildPlan plan_for(const std::string& program, const TestLimits& limits);

/**
 * @brief In the forked child: applies @p plan. Async-signal-safe.
 * @return 0, or the negative errno of a failed switch to the sandbox user.
 */
int apply_plan(const ChildPlan& plan);

/**
 * @brief Makes @p program runnable by the sandbox's uid, once per grading run.
 *
 * When the server must run as another user but cannot reach the binary (a
 * private home directory), the binary is copied into a private temporary
 * directory that user can read; the copy is removed at exit. Also notes
 * whether @p program is a sanitizer build (no memory limit for those).
 * @return the path to run (@p program itself when no copy is needed).
 */
std::string prepare_program(const std::string& program);

/// True when @p program was built with ASan, TSan or MSan (they map terabytes of shadow memory).
bool is_sanitizer_build(const std::string& program);

/// Something the harness saw a server do that a student should hear about.
struct SandboxEvent {
    bool violation = false;  ///< breaks the server contract: fails the test it happened in
    std::string text;        ///< what happened and what to do about it
};
/// Records an event (once per text) for the grader.
void add_sandbox_event(bool violation, const std::string& text);
/// Returns and forgets the events since the last call (the grader asks after each test).
std::vector<SandboxEvent> take_sandbox_events();

}  // namespace muxlab::test
