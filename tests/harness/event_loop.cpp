#include "harness/event_loop.hpp"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/syscall.h>

#include <ios>
#include <set>
#include <sstream>

#include "harness/proc_probe.hpp"
#include "harness/timing.hpp"

namespace muxlab::test {

std::string queue_report(ServerProcess& server, const std::vector<Client>& clients) {
    unsigned port = server.endpoint().port;
    std::string report;
    std::set<unsigned> ports;
    for (const Client& client : clients) ports.insert(client.local_port());
    size_t unread_clients = 0;
    unsigned long unread_bytes = 0;
    for (const proc::TcpSocket& socket : proc::tcp_sockets(server.pid())) {
        if (socket.local_port != port) continue;
        if (socket.state == proc::kTcpListen && socket.rx_queue > 0)
            report += "\n  /proc/net/tcp: the listening socket has " + std::to_string(socket.rx_queue) +
                      " connections waiting in its accept queue (never accepted)";
        if (socket.state != proc::kTcpListen && ports.count(socket.remote_port) && socket.rx_queue > 0) {
            ++unread_clients;
            unread_bytes += socket.rx_queue;
        }
    }
    if (unread_clients > 0)
        report += "\n  /proc/net/tcp: " + std::to_string(unread_bytes) + " bytes from " +
                  std::to_string(unread_clients) +
                  " clients sit unread in the server's sockets (the rx_queue column)";
    return report;
}

std::optional<InterestList> interest_list(ServerProcess& server) {
    auto entries = proc::fds(server.pid());
    if (!entries) return std::nullopt;
    std::map<unsigned long, proc::TcpSocket> tcp;  // by inode
    for (const proc::TcpSocket& socket : proc::tcp_sockets(server.pid()))
        if (socket.local_port == server.endpoint().port) tcp[socket.inode] = socket;
    std::map<int, unsigned long> inode_of_fd;
    for (const proc::FdEntry& entry : *entries) inode_of_fd[entry.fd] = entry.inode;
    InterestList list;
    for (const proc::FdEntry& entry : *entries) {
        if (!entry.is_epoll()) continue;
        list.has_epoll = true;
        for (const proc::FdEntry::Watch& watch : entry.watches) {
            auto socket = tcp.find(inode_of_fd[watch.fd]);
            if (socket == tcp.end()) continue;  // not a TCP socket of this server (a signalfd...)
            if (socket->second.state == proc::kTcpListen) {
                list.listener_watched = true;
                list.listener_events = watch.events;
            } else {
                list.clients[socket->second.remote_port] = watch.events;
            }
        }
    }
    return list;
}

bool is_epoll_wait(long call) {
#ifdef SYS_epoll_pwait2
    if (call == SYS_epoll_pwait2) return true;
#endif
    return call == SYS_epoll_wait || call == SYS_epoll_pwait;
}

std::string output_stalled(ServerProcess& server, const Client& client, const std::string& hint) {
    auto list = interest_list(server);
    if (!list) return "";
    auto found = list->clients.find(client.local_port());
    if (found == list->clients.end() || (found->second & EPOLLOUT)) return "";
    std::ostringstream text;
    text << "\n  " << client.name() << " is waiting for its echo, yet the server's socket for it is "
         << "watched without EPOLLOUT (events 0x" << std::hex << found->second << std::dec
         << "): the echo waiting in the server has nothing to wake it\n  hint: " << hint;
    return text.str();
}

}  // namespace muxlab::test
