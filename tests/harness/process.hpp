/**
 * @file process.hpp
 * @brief A child process the harness starts, watches and stops: its own
 *        session and process group, only fds 0-2 inherited, stdout and
 *        stderr captured (capped), and every descendant reaped at the end.
 *
 * Servers under test run through ServerProcess (server_process.hpp), which
 * adds the sandbox and the ready line; tests use ChildProcess directly for
 * the real programs they drive (an IRC client, tmux).
 */
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "harness/sandbox.hpp"
#include "harness/timing.hpp"

namespace muxlab::test {

/// How a process ended.
struct ExitReport {
    bool exited = false;        ///< returned from main/exit()
    int exit_status = 0;        ///< when exited
    bool signaled = false;      ///< killed by a signal
    int signal = 0;             ///< when signaled
    bool needed_sigkill = false;///< ignored SIGTERM until the harness used SIGKILL
    std::string describe() const;  ///< "exited with status 0", "killed by SIGSEGV"...
};

/// How to start a ChildProcess.
struct SpawnOptions {
    bool sandboxed = false;  ///< apply sandbox() and @ref limits (a server under test)
    TestLimits limits;       ///< with sandboxed: the test's own limits
};

/**
 * @brief A running child process. The destructor stops it (SIGTERM to its
 *        group, then SIGKILL) and reaps it.
 *
 * The test process should be a child subreaper (become_subreaper()), so
 * that descendants which outlive the child are reparented to the harness
 * and can be reaped too.
 */
class ChildProcess {
public:
    /**
     * @brief Starts @p argv (argv[0] is a path; without a slash it is looked
     *        up in PATH). Never throws: check started() and failure().
     */
    explicit ChildProcess(const std::vector<std::string>& argv, const SpawnOptions& options = {});
    ~ChildProcess();
    ChildProcess(const ChildProcess&) = delete;
    ChildProcess& operator=(const ChildProcess&) = delete;

    /// True when the program was executed (it may have exited since).
    bool started() const { return pid_ > 0 && failure_.empty(); }
    /// Why it did not start (empty when it did).
    const std::string& failure() const { return failure_; }
    /// Its process id (and process group id, and session id).
    pid_t pid() const { return pid_; }

    /// True while it has not exited.
    bool running();
    /// Waits up to @p budget for it to exit by itself.
    std::optional<ExitReport> wait_exit(Millis budget);
    /// Sends SIGTERM to the process only (not its group) and waits up to @p budget.
    std::optional<ExitReport> terminate(Millis budget);
    /// Stops it and its process group now (SIGTERM, then SIGKILL); idempotent.
    ExitReport stop();
    /// The exit report, once it has exited.
    const std::optional<ExitReport>& exit_report() const { return exit_; }
    /// True once the harness signalled it (terminate() or stop()).
    bool signalled_by_harness() const { return signalled_; }

    /// Everything it wrote on stdout so far (capped at 1 MiB).
    std::string stdout_text() const;
    /// Everything it wrote on stderr so far (capped at 1 MiB).
    std::string stderr_text() const;
    /// Bytes written beyond the capture cap, thrown away.
    size_t output_discarded() const;
    /// Waits up to @p budget until it and its descendants closed stdout and stderr.
    bool wait_output_closed(Millis budget);
    /**
     * @brief Waits until stdout holds a line (LF) at or after @p offset, the
     *        process exits or closes stdout, or @p deadline passes.
     * @return the line without its LF, and moves @p offset past it; nullopt otherwise.
     */
    std::optional<std::string> wait_stdout_line(size_t* offset, const Deadline& deadline);

private:
    void drain_output();

    pid_t pid_ = -1;
    int pidfd_ = -1;
    int stdout_pipe_ = -1;
    int stderr_pipe_ = -1;
    int wake_pipe_[2] = {-1, -1};
    std::optional<ExitReport> exit_;
    bool signalled_ = false;
    std::string failure_;

    mutable std::mutex mutex_;
    std::condition_variable output_arrived_;
    std::string stdout_;
    std::string stderr_;
    bool output_closed_ = false;
    bool stdout_closed_ = false;
    size_t discarded_ = 0;
    std::thread drainer_;
};

/**
 * @brief A fresh directory under the temporary folder (mkdtemp), removed with
 *        everything in it when this object goes: the working files of a real
 *        program a test drives. Declare it before the ChildProcess that uses
 *        it, so that the program has stopped when its files are removed.
 */
class ScratchDirectory {
public:
    /// Makes TMPDIR/PREFIX-XXXXXX (/tmp when TMPDIR is unset); check made().
    explicit ScratchDirectory(const std::string& prefix);
    ~ScratchDirectory();
    ScratchDirectory(const ScratchDirectory&) = delete;
    ScratchDirectory& operator=(const ScratchDirectory&) = delete;

    /// True when the directory exists.
    bool made() const { return failure_.empty(); }
    /// Why it could not be made (empty when it was).
    const std::string& failure() const { return failure_; }
    /// Its absolute path.
    const std::string& path() const { return path_; }

private:
    std::string path_;
    std::string failure_;
};

/// Runs @p argv to completion (at most @p budget, then it is killed); returns its stdout.
std::string run_program(const std::vector<std::string>& argv, int* exit_status = nullptr,
                        Millis budget = answer_limit());

/// True when @p name is a program found in PATH.
bool have_program(const std::string& name);

/// Pids of the ChildProcess objects alive in this process.
const std::vector<pid_t>& live_children();

/// Every live descendant of this process (children, grandchildren...).
std::vector<pid_t> descendants_of_self();
/// The parent of @p pid (0 when it is gone).
pid_t parent_of(pid_t pid);

/// Makes this process the reaper of orphaned descendants (PR_SET_CHILD_SUBREAPER).
void become_subreaper();

/// Kills (SIGKILL) and reaps every remaining child of this process.
void reap_all_children();

/// Kills and reaps the children of this process that no live ChildProcess owns
/// (orphans a stopped server left behind and that were reparented to us).
void reap_orphans();

}  // namespace muxlab::test
