#include "harness/diagnosis.hpp"

#include <sys/syscall.h>

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "harness/proc_probe.hpp"
#include "harness/sandbox.hpp"
#include "harness/server_process.hpp"

namespace muxlab::test {
namespace {

constexpr int kTcpCloseWait = 0x08;

std::string plural(unsigned long count, const std::string& one, const std::string& many) {
    return std::to_string(count) + " " + (count == 1 ? one : many);
}

/// System calls whose first argument is the descriptor they wait on.
bool waits_on_fd(long number) {
    switch (number) {
    case SYS_read: case SYS_write: case SYS_readv: case SYS_writev:
    case SYS_recvfrom: case SYS_sendto: case SYS_recvmsg: case SYS_sendmsg:
        return true;
    default:
        return false;
    }
}

/// "read() on a client connection (fd 5)" when a single-threaded server waits
/// in an I/O call on one client: everyone else waits too.
std::string blocked_on_client(pid_t pid, const std::set<unsigned long>& listening) {
    if (proc::threads(pid).size() != 1) return "";
    std::ifstream file("/proc/" + std::to_string(pid) + "/syscall");
    long number = -1;
    std::string first_argument;
    if (!(file >> number >> first_argument) || !waits_on_fd(number)) return "";
    int fd = static_cast<int>(std::strtol(first_argument.c_str(), nullptr, 16));
    auto entries = proc::fds(pid);
    if (!entries) return "";
    for (const proc::FdEntry& entry : *entries) {
        if (entry.fd != fd || !entry.is_socket() || listening.count(entry.inode)) continue;
        return "the server is blocked in " + proc::syscall_name(number) + "() on a client connection (fd " +
               std::to_string(fd) + "): while it waits there, no other client is served";
    }
    return "";
}

}  // namespace

std::string seen_from_outside(pid_t root) {
    if (!proc::readable(root)) return "";
    std::set<unsigned long> inodes;  // every socket the server's processes hold
    for (pid_t pid : proc::process_tree(root))
        if (auto entries = proc::fds(pid))
            for (const proc::FdEntry& entry : *entries)
                if (entry.is_socket()) inodes.insert(entry.inode);

    unsigned long waiting = 0, unread_bytes = 0, unread_connections = 0, close_wait = 0;
    std::set<unsigned long> listening;
    for (const proc::TcpSocket& socket : proc::tcp_sockets(root)) {
        if (inodes.count(socket.inode) == 0) continue;
        if (socket.state == proc::kTcpListen) {
            listening.insert(socket.inode);
            waiting += socket.rx_queue;
        } else if (socket.state == kTcpCloseWait) {
            ++close_wait;
        } else if (socket.state == proc::kTcpEstablished && socket.rx_queue > 0) {
            ++unread_connections;
            unread_bytes += socket.rx_queue;
        }
    }

    std::vector<std::string> findings;
    if (waiting > 0)
        findings.push_back(plural(waiting, "connection waits", "connections wait") +
                           " in the listening socket's accept queue: the server has not accept()ed " +
                           (waiting == 1 ? "it" : "them"));
    if (unread_bytes > 0)
        findings.push_back(plural(unread_bytes, "byte", "bytes") + " sent by clients sit unread in the server's " +
                           "receive queue (" + plural(unread_connections, "connection", "connections") + ")");
    if (close_wait > 0)
        findings.push_back(plural(close_wait, "connection was", "connections were") +
                           " shut down by the client and not closed by the server (CLOSE_WAIT): the server did not "
                           "read the end of file (read() returning 0), or read it and kept the socket open");
    std::string blocked = blocked_on_client(root, listening);
    if (!blocked.empty()) findings.push_back(blocked);

    std::string text;
    for (const std::string& finding : findings) text += "\n  - " + finding;
    return text;
}

void note_server_state() {
    static bool noted = false;  // one test per process: the first failure is the one explained
    if (noted) return;
    noted = true;
    for (pid_t server : running_servers()) {
        std::string text = seen_from_outside(server);
        if (!text.empty()) add_sandbox_event(false, "seen from outside the server when the test failed:" + text);
    }
}

}  // namespace muxlab::test
