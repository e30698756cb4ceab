/**
 * @file proc_probe.hpp
 * @brief What the kernel says about a server, read from /proc: processes,
 *        threads, the system call each one waits in, open fds and their
 *        flags, epoll interest lists, TCP queues, CPU use.
 *
 * These are the same files a student can read with `cat` (see
 * notes/debugging.md). Every function returns std::nullopt (or an empty
 * result) when /proc cannot be read; tests then report "model check skipped"
 * instead of failing.
 */
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "harness/timing.hpp"

namespace muxlab::test::proc {

/// True when this process can read /proc/@p pid/ (else model checks are skipped).
bool readable(pid_t pid);

/// @p root and all its live descendants (children, grandchildren...), root first.
std::vector<pid_t> process_tree(pid_t root);
/// The thread ids of process @p pid.
std::vector<pid_t> threads(pid_t pid);
/// The one-letter state of a process ('R', 'S', 'Z'...), or 0 if it is gone.
char state(pid_t pid);
/// Processes in the tree of @p root that are zombies (exited, not yet reaped).
std::vector<pid_t> zombies(pid_t root);

/// What a task is doing, from /proc/PID/task/TID/syscall.
struct SyscallState {
    bool running = false;     ///< on a CPU (or runnable): not waiting in a system call
    long number = -1;         ///< the system call it waits in (when !running), -1 if none
};
/// The system call thread @p tid of process @p pid is blocked in.
std::optional<SyscallState> blocked_syscall(pid_t pid, pid_t tid);
/// The name of system call @p number for messages ("epoll_wait"), from the SYS_* constants.
std::string syscall_name(long number);

/**
 * @brief Waits until thread @p tid of @p pid sits in a system call and
 *        stays there; returns that call's number.
 *
 * An idle server blocks in one call (accept, select, epoll_wait...). The
 * answer is taken once several consecutive looks agree, so a thread passing
 * through other calls is not mistaken for idle. nullopt if /proc is unreadable
 * or the thread never settles within @p budget.
 */
std::optional<long> idle_syscall(pid_t pid, pid_t tid, Millis budget = answer_limit());

/// One open file descriptor of a process.
struct FdEntry {
    int fd = -1;
    std::string target;            ///< readlink of /proc/PID/fd/N: "socket:[123]", "anon_inode:[eventpoll]"
    unsigned long flags = 0;       ///< file status flags from fdinfo (O_NONBLOCK, O_ASYNC...)
    unsigned long inode = 0;       ///< socket inode (for joining with /proc/net/tcp), 0 otherwise
    /// For an epoll fd: the watched fds (tfd) and their event masks.
    struct Watch { int fd; uint32_t events; };
    std::vector<Watch> watches;
    bool is_socket() const { return target.rfind("socket:", 0) == 0; }
    bool is_epoll() const { return target == "anon_inode:[eventpoll]"; }
};
/// Every open fd of process @p pid (nullopt if /proc is unreadable).
std::optional<std::vector<FdEntry>> fds(pid_t pid);

/// One TCP socket from /proc/PID/net/tcp and tcp6.
struct TcpSocket {
    unsigned long inode = 0;
    int state = 0;                 ///< 0x0A LISTEN, 0x01 ESTABLISHED, ...
    unsigned local_port = 0;
    unsigned remote_port = 0;
    unsigned long tx_queue = 0;    ///< bytes not yet acknowledged (connected), or 0
    unsigned long rx_queue = 0;    ///< bytes not yet read by the owner; for LISTEN: the accept queue length
};
constexpr int kTcpListen = 0x0A;
constexpr int kTcpEstablished = 0x01;
/// The TCP sockets in @p pid's network namespace.
std::vector<TcpSocket> tcp_sockets(pid_t pid);

/// Socket fds of @p pid split by role (fd numbers).
struct SocketFds {
    std::vector<int> listening;
    std::vector<int> connected;    ///< any TCP socket that is not listening
};
std::optional<SocketFds> socket_fds(pid_t pid);

/// CPU use of a whole process tree, cumulative.
struct CpuUse {
    unsigned long ticks = 0;            ///< user + system clock ticks, all threads, all processes
    unsigned long sleeps = 0;           ///< voluntary context switches (went to sleep), all threads
    unsigned long long runnable_ns = 0; ///< time on a CPU or waiting for one (schedstat), all threads
};
std::optional<CpuUse> cpu_use(pid_t root);

/**
 * @brief Watches an idle server's tree for @p window and reports whether it
 *        burnt CPU (a busy loop) or woke up often (a polling timer).
 * @return an empty string when idle, else a description of what it did.
 *         nullopt if /proc is unreadable.
 */
std::optional<std::string> idle_activity(pid_t root, Millis window = Millis(1000));

/// A line from /proc/PID/status ("SigCgt", "Threads"...), without the key.
std::optional<std::string> status_field(pid_t pid, const std::string& key);
/// True when signal @p sig is caught (SigCgt) or blocked (SigBlk) by some thread of @p pid.
std::optional<bool> signal_caught_or_blocked(pid_t pid, int sig);

}  // namespace muxlab::test::proc
