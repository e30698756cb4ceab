/**
 * @file server_process.hpp
 * @brief Starts a server under test, reads its ready line, and stops it with
 *        everything it spawned.
 */
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "harness/timing.hpp"

namespace muxlab::test {

/// Where a server listens, as its ready line told.
struct Endpoint {
    std::string host;    ///< e.g. "127.0.0.1"
    unsigned port = 0;   ///< the real port (never 0)
};

/// How to start a server.
struct LaunchOptions {
    std::vector<std::string> args;        ///< stage options after `-p 0`
    std::optional<rlim_t> max_open_files; ///< RLIMIT_NOFILE for the server
    std::optional<rlim_t> cpu_seconds;    ///< RLIMIT_CPU for the server
    std::optional<rlim_t> max_processes;  ///< RLIMIT_NPROC for the server
    std::optional<rlim_t> address_space;  ///< RLIMIT_AS in bytes
    std::vector<std::string> ready_prefixes = {"listening on"};  ///< ready lines to wait for, in order
};

/**
 * @brief The cage every server runs in, whatever the test: set once by the
 *        grader (set_sandbox()) before any server starts.
 *
 * A submission is untrusted code. These limits keep a broken or hostile one
 * (a fork bomb, a busy loop, endless logging, a memory hog) from hanging the
 * grader or harming the machine; they are far above what a correct server
 * needs. A limit a test sets in LaunchOptions wins over the sandbox's.
 * The default Sandbox limits nothing (unit tests of the harness).
 */
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

/// Something the harness saw a server do that a student should hear about.
struct SandboxEvent {
    bool violation = false;  ///< breaks the server contract: fails the test it happened in
    std::string text;        ///< what happened and what to do about it
};
/// Returns and forgets the events since the last call (the grader asks after each test).
std::vector<SandboxEvent> take_sandbox_events();

/// True when @p program was built with ASan, TSan or MSan (they map terabytes of shadow memory).
bool is_sanitizer_build(const std::string& program);

/// How a stopped server ended.
struct ExitReport {
    bool exited = false;        ///< returned from main/exit()
    int exit_status = 0;        ///< when exited
    bool signaled = false;      ///< killed by a signal
    int signal = 0;             ///< when signaled
    bool needed_sigkill = false;///< ignored SIGTERM until the harness used SIGKILL
    std::string describe() const;  ///< "exited with status 0", "killed by SIGSEGV"...
};

/**
 * @brief A running server process, in its own session and process group,
 *        with only fds 0-2 inherited (stdin is /dev/null; stdout and stderr
 *        are captured), under the limits of sandbox().
 *
 * The destructor stops the server (SIGTERM, then SIGKILL) and reaps it and
 * all its descendants. The test process must be a child subreaper
 * (become_subreaper()) so that descendants which outlive the server are
 * reparented to the harness and can be reaped too.
 */
class ServerProcess {
public:
    /**
     * @brief Starts @p program with `-p 0` and @p options.args, and waits
     *        for its ready line(s).
     *
     * Never throws for a server that misbehaves: check ready() and
     * failure() instead, so a test can report what went wrong.
     */
    ServerProcess(const std::string& program, const LaunchOptions& options = {});
    ~ServerProcess();
    ServerProcess(const ServerProcess&) = delete;
    ServerProcess& operator=(const ServerProcess&) = delete;

    /// True when the server printed every expected ready line in time.
    bool ready() const { return ready_; }
    /// Why the server is not ready (empty when it is).
    const std::string& failure() const { return failure_; }
    /// The endpoint from ready line @p index (0: the main `listening on` line).
    const Endpoint& endpoint(size_t index = 0) const { return endpoints_.at(index); }
    /// The server's process id (its process group id too).
    pid_t pid() const { return pid_; }

    /// True while the server process has not exited.
    bool running();
    /// Everything the server wrote on stderr so far (capped), for failure reports.
    std::string stderr_text() const;
    /// Everything the server wrote on stdout so far (capped).
    std::string stdout_text() const;
    /// The last few lines of stderr, formatted for a failure message; also says
    /// how the server ended when a sandbox limit stopped it.
    std::string stderr_tail(size_t max_lines = 8) const;
    /// Bytes the server wrote beyond the capture cap (1 MiB per stream), thrown away.
    size_t output_discarded() const;

    /**
     * @brief Sends SIGTERM to the server process only (not its group) and
     *        waits up to @p budget for it to exit.
     * @return the exit report, or nullopt if it was still running.
     */
    std::optional<ExitReport> terminate(Millis budget);
    /// Waits up to @p budget for the server to exit by itself.
    std::optional<ExitReport> wait_exit(Millis budget);

    /// Waits up to @p budget until the server and its descendants closed stdout and stderr
    /// (so stdout_text() and stderr_text() are complete).
    bool wait_output_closed(Millis budget);

    /// Stops the server and every descendant now; idempotent.
    ExitReport stop();

private:
    void drain_output();
    bool wait_for_ready_lines(const LaunchOptions& options);
    void note_exit();

    pid_t pid_ = -1;
    int pidfd_ = -1;
    int stdout_pipe_ = -1;
    int stderr_pipe_ = -1;
    int wake_pipe_[2] = {-1, -1};
    std::optional<ExitReport> exit_;
    bool signalled_ = false;  // the harness sent SIGTERM or SIGKILL
    bool ready_ = false;
    std::string failure_;
    std::vector<Endpoint> endpoints_;

    mutable std::mutex mutex_;
    std::condition_variable output_arrived_;
    std::string stdout_;
    std::string stderr_;
    bool output_closed_ = false;
    bool stdout_closed_ = false;
    size_t discarded_ = 0;
    std::thread drainer_;
};

/// Makes this process the reaper of orphaned descendants (PR_SET_CHILD_SUBREAPER).
void become_subreaper();

/// Kills (SIGKILL) and reaps every remaining child of this process.
void reap_all_children();

}  // namespace muxlab::test
