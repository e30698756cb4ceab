#include "harness/proc_probe.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

namespace muxlab::test::proc {
namespace {

std::string task_dir(pid_t pid) { return "/proc/" + std::to_string(pid); }

std::vector<pid_t> numeric_entries(const std::string& directory) {
    std::vector<pid_t> entries;
    DIR* dir = opendir(directory.c_str());
    if (dir == nullptr) return entries;
    while (dirent* entry = readdir(dir)) {
        char* end = nullptr;
        long value = std::strtol(entry->d_name, &end, 10);
        if (end != entry->d_name && *end == '\0') entries.push_back(static_cast<pid_t>(value));
    }
    closedir(dir);
    return entries;
}

std::optional<std::string> read_text(const std::string& path) {
    std::ifstream file(path);
    if (!file) return std::nullopt;
    std::ostringstream text;
    text << file.rdbuf();
    return text.str();
}

/// Fields of /proc/PID/stat after the command name (which may contain spaces).
std::vector<std::string> stat_fields(const std::string& path) {
    std::vector<std::string> fields;
    auto text = read_text(path);
    if (!text) return fields;
    size_t close_paren = text->rfind(')');
    if (close_paren == std::string::npos) return fields;
    std::istringstream rest(text->substr(close_paren + 2));
    for (std::string field; rest >> field;) fields.push_back(field);
    return fields;  // fields[0] is the state (field 3 of stat(5))
}

}  // namespace

bool readable(pid_t pid) {
    return access((task_dir(pid) + "/syscall").c_str(), R_OK) == 0 &&
           read_text(task_dir(pid) + "/syscall").has_value();
}

std::vector<pid_t> process_tree(pid_t root) {
    std::vector<pid_t> tree;
    if (state(root) == 0) return tree;
    tree.push_back(root);
    for (size_t i = 0; i < tree.size(); ++i) {
        for (pid_t tid : threads(tree[i])) {
            std::ifstream children(task_dir(tree[i]) + "/task/" + std::to_string(tid) + "/children");
            for (pid_t child; children >> child;) tree.push_back(child);
        }
    }
    return tree;
}

std::vector<pid_t> threads(pid_t pid) { return numeric_entries(task_dir(pid) + "/task"); }

char state(pid_t pid) {
    auto fields = stat_fields(task_dir(pid) + "/stat");
    return fields.empty() ? 0 : fields[0][0];
}

std::vector<pid_t> zombies(pid_t root) {
    std::vector<pid_t> found;
    for (pid_t pid : process_tree(root))
        if (state(pid) == 'Z') found.push_back(pid);
    return found;
}

std::optional<SyscallState> blocked_syscall(pid_t pid, pid_t tid) {
    auto text = read_text(task_dir(pid) + "/task/" + std::to_string(tid) + "/syscall");
    if (!text || text->empty()) return std::nullopt;
    SyscallState result;
    if (text->rfind("running", 0) == 0) {
        result.running = true;
        return result;
    }
    result.number = std::strtol(text->c_str(), nullptr, 10);
    return result;
}

std::string syscall_name(long number) {
    static const std::map<long, std::string> names = {
        {SYS_accept, "accept"}, {SYS_accept4, "accept4"}, {SYS_read, "read"},
        {SYS_recvfrom, "recvfrom"}, {SYS_recvmsg, "recvmsg"}, {SYS_write, "write"},
        {SYS_sendto, "sendto"}, {SYS_sendmsg, "sendmsg"}, {SYS_writev, "writev"},
        {SYS_select, "select"}, {SYS_pselect6, "pselect6"}, {SYS_poll, "poll"},
        {SYS_ppoll, "ppoll"}, {SYS_epoll_wait, "epoll_wait"}, {SYS_epoll_pwait, "epoll_pwait"},
#ifdef SYS_epoll_pwait2
        {SYS_epoll_pwait2, "epoll_pwait2"},
#endif
        {SYS_pause, "pause"}, {SYS_rt_sigsuspend, "rt_sigsuspend"},
        {SYS_rt_sigtimedwait, "rt_sigtimedwait"}, {SYS_wait4, "wait4"}, {SYS_waitid, "waitid"},
        {SYS_futex, "futex"}, {SYS_nanosleep, "nanosleep"}, {SYS_clock_nanosleep, "clock_nanosleep"},
        {SYS_connect, "connect"}, {SYS_io_uring_enter, "io_uring_enter"},
    };
    auto found = names.find(number);
    return found != names.end() ? found->second : "system call #" + std::to_string(number);
}

std::optional<long> idle_syscall(pid_t pid, pid_t tid, Millis budget) {
    if (!readable(pid)) return std::nullopt;
    constexpr int kAgreeingLooks = 5;
    long last = -2;
    int agreeing = 0;
    bool settled = eventually(budget, [&] {
        auto now = blocked_syscall(pid, tid);
        if (!now) return true;  // gone: give up below
        long number = now->running ? -2 : now->number;
        agreeing = (number == last && number >= 0) ? agreeing + 1 : 0;
        last = number;
        return agreeing >= kAgreeingLooks;
    });
    if (!settled || last < 0) return std::nullopt;
    return last;
}

std::optional<std::vector<FdEntry>> fds(pid_t pid) {
    std::string dir = task_dir(pid);
    if (access((dir + "/fd").c_str(), R_OK) != 0) return std::nullopt;
    std::vector<FdEntry> entries;
    for (pid_t fd : numeric_entries(dir + "/fd")) {
        FdEntry entry;
        entry.fd = fd;
        char target[256];
        ssize_t n = readlink((dir + "/fd/" + std::to_string(fd)).c_str(), target, sizeof target - 1);
        if (n < 0) continue;  // closed while we looked
        entry.target.assign(target, static_cast<size_t>(n));
        if (entry.is_socket()) entry.inode = std::strtoul(entry.target.c_str() + 8, nullptr, 10);
        std::ifstream info(dir + "/fdinfo/" + std::to_string(fd));
        for (std::string line; std::getline(info, line);) {
            std::istringstream words(line);
            std::string key;
            words >> key;
            if (key == "flags:") {
                std::string octal;
                words >> octal;
                entry.flags = std::strtoul(octal.c_str(), nullptr, 8);
            } else if (key == "tfd:") {
                FdEntry::Watch watch{};
                std::string events_key, events;
                words >> watch.fd >> events_key >> events;
                watch.events = static_cast<uint32_t>(std::strtoul(events.c_str(), nullptr, 16));
                entry.watches.push_back(watch);
            }
        }
        entries.push_back(entry);
    }
    return entries;
}

std::vector<TcpSocket> tcp_sockets(pid_t pid) {
    std::vector<TcpSocket> sockets;
    for (const char* table : {"/net/tcp", "/net/tcp6"}) {
        std::ifstream file(task_dir(pid) + table);
        std::string line;
        std::getline(file, line);  // header
        while (std::getline(file, line)) {
            // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
            std::istringstream words(line);
            std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
            words >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >> inode;
            TcpSocket socket;
            socket.state = static_cast<int>(std::strtol(state.c_str(), nullptr, 16));
            socket.local_port = static_cast<unsigned>(std::strtoul(local.substr(local.rfind(':') + 1).c_str(), nullptr, 16));
            socket.remote_port = static_cast<unsigned>(std::strtoul(remote.substr(remote.rfind(':') + 1).c_str(), nullptr, 16));
            size_t colon = queues.find(':');
            socket.tx_queue = std::strtoul(queues.substr(0, colon).c_str(), nullptr, 16);
            socket.rx_queue = std::strtoul(queues.substr(colon + 1).c_str(), nullptr, 16);
            socket.inode = std::strtoul(inode.c_str(), nullptr, 10);
            sockets.push_back(socket);
        }
    }
    return sockets;
}

std::optional<SocketFds> socket_fds(pid_t pid) {
    auto entries = fds(pid);
    if (!entries) return std::nullopt;
    std::set<unsigned long> listening_inodes;
    for (const TcpSocket& socket : tcp_sockets(pid))
        if (socket.state == kTcpListen) listening_inodes.insert(socket.inode);
    SocketFds result;
    for (const FdEntry& entry : *entries) {
        if (!entry.is_socket()) continue;
        (listening_inodes.count(entry.inode) ? result.listening : result.connected).push_back(entry.fd);
    }
    return result;
}

std::optional<CpuUse> cpu_use(pid_t root) {
    if (!readable(root)) return std::nullopt;
    CpuUse use;
    for (pid_t pid : process_tree(root)) {
        auto fields = stat_fields(task_dir(pid) + "/stat");
        if (fields.size() > 12) use.ticks += std::strtoul(fields[11].c_str(), nullptr, 10) +
                                             std::strtoul(fields[12].c_str(), nullptr, 10);
        for (pid_t tid : threads(pid)) {
            std::string task = task_dir(pid) + "/task/" + std::to_string(tid);
            std::ifstream status(task + "/status");
            for (std::string line; std::getline(status, line);) {
                if (line.rfind("voluntary_ctxt_switches:", 0) == 0)
                    use.sleeps += std::strtoul(line.c_str() + line.find(':') + 1, nullptr, 10);
            }
            // schedstat: nanoseconds on a CPU, nanoseconds waiting for one, time slices.
            unsigned long long on_cpu = 0, waiting = 0;
            std::ifstream schedstat(task + "/schedstat");
            if (schedstat >> on_cpu >> waiting) use.runnable_ns += on_cpu + waiting;
        }
    }
    return use;
}

std::optional<std::string> idle_activity(pid_t root, Millis window) {
    auto before = cpu_use(root);
    if (!before) return std::nullopt;
    std::this_thread::sleep_for(window);  // a measurement window, not a wait for an event
    auto after = cpu_use(root);
    if (!after) return std::nullopt;
    long hz = sysconf(_SC_CLK_TCK);
    unsigned long ticks = after->ticks - before->ticks;
    unsigned long sleeps = after->sleeps - before->sleeps;
    auto runnable_ms = static_cast<long long>((after->runnable_ns - before->runnable_ns) / 1000000);
    double seconds = static_cast<double>(window.count()) / 1000.0;
    // A busy loop burns CPU; a server on a short timer goes to sleep and
    // wakes tens of times a second (voluntary context switches). On a loaded
    // machine a busy loop may get little CPU, but it never sleeps: it is on a
    // CPU or waiting for one the whole window. An idle event loop does none
    // of these. Thresholds leave a wide margin both ways.
    std::string quiet = " ms with no client activity";
    bool never_slept = runnable_ms >= window.count() / 2 && static_cast<double>(sleeps) <= 50.0 * seconds;
    if (static_cast<double>(ticks) >= 0.1 * static_cast<double>(hz) * seconds || never_slept)
        return "it used " + std::to_string(ticks * 1000 / static_cast<unsigned long>(hz)) + " ms of CPU and was " +
               "running or waiting for a CPU " + std::to_string(runnable_ms) + " ms of " +
               std::to_string(window.count()) + quiet + " (a busy loop)";
    if (static_cast<double>(sleeps) > 50.0 * seconds)
        return "it woke up " + std::to_string(sleeps) + " times in " + std::to_string(window.count()) + quiet +
               " (a polling loop or a short timeout)";
    return std::string();
}

std::optional<std::string> status_field(pid_t pid, const std::string& key) {
    std::ifstream status(task_dir(pid) + "/status");
    if (!status) return std::nullopt;
    for (std::string line; std::getline(status, line);) {
        if (line.rfind(key + ":", 0) == 0) {
            size_t start = line.find_first_not_of(" \t", key.size() + 1);
            return start == std::string::npos ? "" : line.substr(start);
        }
    }
    return std::nullopt;
}

std::optional<bool> signal_caught_or_blocked(pid_t pid, int sig) {
    if (!readable(pid)) return std::nullopt;
    unsigned long long bit = 1ULL << (sig - 1);
    auto caught = status_field(pid, "SigCgt");
    if (caught && (std::strtoull(caught->c_str(), nullptr, 16) & bit)) return true;
    for (pid_t tid : threads(pid)) {
        std::ifstream status(task_dir(pid) + "/task/" + std::to_string(tid) + "/status");
        for (std::string line; std::getline(status, line);)
            if (line.rfind("SigBlk:", 0) == 0 && (std::strtoull(line.c_str() + 7, nullptr, 16) & bit))
                return true;
    }
    return false;
}

}  // namespace muxlab::test::proc
