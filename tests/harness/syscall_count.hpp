/**
 * @file syscall_count.hpp
 * @brief Counts the system calls a server makes, exactly, with ptrace.
 *
 * /proc shows the call a thread waits in, not how many it made. To count
 * them, the harness traces the server for a while: PTRACE_SEIZE attaches
 * without stopping it, PTRACE_INTERRUPT holds it still (so that work queued
 * meanwhile reaches it at one instant, like Frozen), and PTRACE_SYSCALL with
 * PTRACE_O_TRACESYSGOOD stops it at the entry and the exit of every system
 * call; PTRACE_GET_SYSCALL_INFO tells the two apart. Entries are counted,
 * then the harness detaches and the server runs on untouched.
 *
 * Only the server's main thread is traced (the stages that use this are
 * single-threaded; the kernel's io_uring workers are not the server's calls).
 * Tracing needs permission: the harness is the server's parent, which Yama's
 * ptrace_scope 1 allows, but a container may forbid ptrace altogether; then
 * error() says why and the test skips.
 */
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>

namespace muxlab::test {

/// System calls entered, by number.
using SyscallCounts = std::map<long, long>;

/// Total of @p counts.
long total_syscalls(const SyscallCounts& counts);
/// "io_uring_enter 12, sendto 3" (most frequent first), for failure messages.
std::string describe_syscalls(const SyscallCounts& counts);

/**
 * @brief Traces one process from a thread of its own (every ptrace request
 *        must come from the thread that attached).
 *
 * @code
 *   SyscallCounter counter(server().pid());   // attached, server held still
 *   if (!counter.error().empty()) GTEST_SKIP() << counter.error();
 *   ... clients send ...                        // waits in the kernel
 *   counter.resume();                           // server runs, calls counted
 *   ... clients read their echo ...
 *   SyscallCounts counts = counter.finish();    // detached
 * @endcode
 */
class SyscallCounter {
public:
    /// Attaches to @p pid and holds it stopped (check error()).
    explicit SyscallCounter(pid_t pid);
    /// Detaches if still attached.
    ~SyscallCounter();
    SyscallCounter(const SyscallCounter&) = delete;
    SyscallCounter& operator=(const SyscallCounter&) = delete;

    /// Empty when attached; otherwise why tracing is not possible here.
    const std::string& error() const { return error_; }
    /// Lets the process run; from now on every system call it enters is counted.
    void resume();
    /// Stops counting, detaches (the process runs on), and returns the counts.
    SyscallCounts finish();

private:
    enum class State { kAttaching, kHeld, kCounting, kFinishing, kDone };
    void trace();                      // the tracer thread
    void set_state(State state);

    pid_t pid_;
    std::string error_;
    SyscallCounts counts_;
    State state_ = State::kAttaching;
    std::mutex mutex_;
    std::condition_variable changed_;
    std::thread tracer_;
};

}  // namespace muxlab::test
