/**
 * @file event_loop.hpp
 * @brief Probes for the event-loop stages (06-08): freeze a server so that
 *        many events arrive at once, read what waits in its sockets, and read
 *        its epoll interest list.
 */
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "harness/client.hpp"
#include "harness/proc_probe.hpp"
#include "harness/server_process.hpp"

namespace muxlab::test {

/**
 * Stops the server's process group with SIGSTOP until thaw() (or the end of
 * the scope). What clients do meanwhile waits in the kernel and reaches the
 * server at one instant when it resumes: the worst case of many events at
 * once, made certain instead of left to timing.
 */
class Frozen {
public:
    /// Stops @p server's process group and waits until it is stopped.
    explicit Frozen(ServerProcess& server) : pid_(server.pid()) {
        kill(-pid_, SIGSTOP);
        stopped_ = eventually(answer_limit(), [&] { return proc::state(pid_) == 'T'; });
    }
    ~Frozen() { thaw(); }
    Frozen(const Frozen&) = delete;
    Frozen& operator=(const Frozen&) = delete;
    /// True when the server really stopped (so the test's premise holds).
    bool stopped() const { return stopped_; }
    /// Lets the server run again (SIGCONT), before the end of the scope.
    void thaw() {
        if (pid_ > 0) kill(-pid_, SIGCONT);
        pid_ = -1;
    }

private:
    pid_t pid_;
    bool stopped_ = false;
};

/// What /proc/net/tcp says is waiting inside the server: connections not yet
/// accepted, and bytes clients sent that the server has not read.
std::string queue_report(ServerProcess& server, const std::vector<Client>& clients);

/// The server's epoll interest lists, as fdinfo shows them, joined with
/// /proc/net/tcp: which of its TCP sockets are watched, and for what.
struct InterestList {
    bool has_epoll = false;          ///< the server holds an epoll instance
    bool listener_watched = false;   ///< its listening socket is in an interest list
    uint32_t listener_events = 0;    ///< the events the listener is watched for
    std::map<unsigned, uint32_t> clients;  ///< client port -> events of the server's socket for it
};

/// Reads @p server's interest list; nullopt when /proc cannot be read.
std::optional<InterestList> interest_list(ServerProcess& server);

/**
 * When the server's socket for @p client is in the interest list without
 * EPOLLOUT: echo that waits in the server then has nothing to wake it. Says
 * so, followed by @p hint (how this stage arms EPOLLOUT); "" otherwise.
 */
std::string output_stalled(ServerProcess& server, const Client& client, const std::string& hint);

/// True for epoll_wait, epoll_pwait and epoll_pwait2.
bool is_epoll_wait(long call);

}  // namespace muxlab::test
