/**
 * @file server_process.hpp
 * @brief Starts a server under test in the sandbox, reads its ready line,
 *        and stops it with everything it spawned.
 */
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "harness/endpoint.hpp"
#include "harness/process.hpp"
#include "harness/sandbox.hpp"
#include "harness/timing.hpp"

namespace muxlab::test {

/// How to start a server.
struct LaunchOptions {
    std::vector<std::string> args;        ///< stage options after `-p 0`
    std::optional<rlim_t> max_open_files; ///< RLIMIT_NOFILE for the server
    std::optional<rlim_t> cpu_seconds;    ///< RLIMIT_CPU for the server
    std::optional<rlim_t> max_processes;  ///< RLIMIT_NPROC for the server
    std::optional<rlim_t> address_space;  ///< RLIMIT_AS in bytes
    std::vector<std::string> ready_prefixes = {"listening on"};  ///< ready lines to wait for, in order
};

/// Pids of the ServerProcess objects alive in this (test) process, oldest first.
std::vector<pid_t> running_servers();

/**
 * @brief A running server process: a ChildProcess started with `-p 0` under
 *        the sandbox (sandbox.hpp), whose ready line(s) tell where it listens.
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
    pid_t pid() const { return process_.pid(); }

    /// True while the server process has not exited.
    bool running() { return !wait_exit(Millis(0)).has_value(); }
    /// Everything the server wrote on stderr so far (capped).
    std::string stderr_text() const { return process_.stderr_text(); }
    /// Everything the server wrote on stdout so far (capped).
    std::string stdout_text() const { return process_.stdout_text(); }
    /// The last few lines of stderr, control characters escaped, formatted for
    /// a failure message; also says how the server ended when a sandbox limit stopped it.
    std::string stderr_tail(size_t max_lines = 8) const;
    /// Bytes the server wrote beyond the capture cap (1 MiB per stream), thrown away.
    size_t output_discarded() const { return process_.output_discarded(); }

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
    bool wait_output_closed(Millis budget) { return process_.wait_output_closed(budget); }

    /// Stops the server and every descendant now; idempotent.
    ExitReport stop();

private:
    bool wait_for_ready_lines(const LaunchOptions& options);
    void note_exit();
    void note_escapes();
    void note_sanitizer_reports();

    std::string program_;
    ChildProcess process_;
    bool ready_ = false;
    bool stopped_ = false;
    std::string failure_;
    std::vector<Endpoint> endpoints_;
};

/// @p text with control characters (terminal escapes, CR, BEL...) shown as
/// \\xNN, so a server's output cannot redraw or hide lines of a report.
std::string escape_controls(const std::string& text);

}  // namespace muxlab::test
