/**
 * @file sandbox.cpp
 * @brief Private network namespace and the server limits (see sandbox.hpp).
 */
#include "grader/sandbox.hpp"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "harness/sandbox.hpp"
#include "harness/timing.hpp"

namespace muxlab::grader {
namespace {

// Far above what a correct server needs, even a sanitizer build under load.
constexpr rlim_t kCpuSeconds = 20;                // per server process, scaled by MUXLAB_TIME_SCALE
constexpr rlim_t kProcesses = 512;                // processes and threads of the server's user
constexpr rlim_t kDataBytes = rlim_t{8} << 30;    // leaves room for hundreds of thread stacks
constexpr rlim_t kFileBytes = rlim_t{64} << 20;   // a correct server writes no file at all
// Servers of a root grader run as kUidBase + the grader's pid: a uid no
// account uses, and one per grader, so graders running side by side do not
// share an RLIMIT_NPROC count or signal each other's servers.
constexpr uid_t kUidBase = 2000000000;

bool write_text(const char* path, const std::string& text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return false;
    bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    close(fd);
    return ok;
}

/// A fresh network namespace has a loopback interface, down: bring it up.
bool bring_loopback_up() {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    ifreq request{};
    std::strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
    bool ok = ioctl(fd, SIOCGIFFLAGS, &request) == 0;
    request.ifr_flags |= IFF_UP | IFF_RUNNING;
    ok = ok && ioctl(fd, SIOCSIFFLAGS, &request) == 0;
    close(fd);
    return ok;
}

/// Root (or CAP_SYS_ADMIN): a network namespace directly. Others: inside a
/// user namespace of their own, where they hold the capability to do it.
bool try_private_network(std::string* why_not) {
    if (unshare(CLONE_NEWNET) == 0) {
        if (bring_loopback_up()) return true;
        *why_not = std::string("cannot bring up loopback: ") + std::strerror(errno);
        return false;
    }
    int direct_error = errno;
    if (geteuid() != 0) {
        uid_t uid = geteuid();
        gid_t gid = getegid();
        if (unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0) {
            // Map our own ids only: the grader keeps its identity (and its
            // files), and servers run as that same unprivileged user.
            write_text("/proc/self/setgroups", "deny");
            bool mapped = write_text("/proc/self/uid_map", std::to_string(uid) + " " + std::to_string(uid) + " 1\n") &&
                          write_text("/proc/self/gid_map", std::to_string(gid) + " " + std::to_string(gid) + " 1\n");
            if (mapped && bring_loopback_up()) return true;
            *why_not = "user namespaces are restricted here";
            return false;
        }
    }
    *why_not = std::string("unshare: ") + std::strerror(direct_error);
    return false;
}

/// A namespace whose loopback cannot be brought up would leave the grader
/// with no network at all, and there is no way back from it: so a throwaway
/// child tries first, and only when it succeeds does the grader follow.
bool enter_private_network(std::string* why_not) {
    int report[2];
    if (pipe(report) != 0) {
        *why_not = std::string("pipe: ") + std::strerror(errno);
        return false;
    }
    pid_t probe = fork();
    if (probe == 0) {
        close(report[0]);
        std::string reason;
        bool ok = try_private_network(&reason);
        ssize_t ignored = write(report[1], reason.data(), reason.size());
        (void)ignored;
        _exit(ok ? 0 : 1);
    }
    close(report[1]);
    char reason[256];
    ssize_t got = probe > 0 ? read(report[0], reason, sizeof reason) : -1;
    close(report[0]);
    int status = 1;
    if (probe > 0) waitpid(probe, &status, 0);
    if (probe < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        *why_not = got > 0 ? std::string(reason, static_cast<size_t>(got)) : "the trial namespace failed";
        return false;
    }
    return try_private_network(why_not);
}

/// True when a child can switch to @p uid (a container may map only a few
/// uids, and a server that cannot start would fail every test).
bool can_switch_to(uid_t uid) {
    pid_t probe = fork();
    if (probe == 0) {
        bool ok = setgroups(0, nullptr) == 0 && setresgid(static_cast<gid_t>(uid), static_cast<gid_t>(uid),
                                                          static_cast<gid_t>(uid)) == 0 &&
                  setresuid(uid, uid, uid) == 0;
        _exit(ok ? 0 : 1);
    }
    int status = 1;
    if (probe > 0) waitpid(probe, &status, 0);
    return probe > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/// Tasks (processes and threads) of @p uid right now: RLIMIT_NPROC counts
/// them all, the user's shell and browser included.
rlim_t tasks_of(uid_t uid) {
    rlim_t count = 0;
    DIR* proc = opendir("/proc");
    if (proc == nullptr) return 0;
    while (dirent* entry = readdir(proc)) {
        if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
        std::ifstream status(std::string("/proc/") + entry->d_name + "/status");
        std::string line;
        unsigned real_uid = ~0u, threads = 0;
        while (std::getline(status, line)) {
            if (line.rfind("Uid:", 0) == 0) real_uid = static_cast<unsigned>(std::strtoul(line.c_str() + 4, nullptr, 10));
            if (line.rfind("Threads:", 0) == 0) threads = static_cast<unsigned>(std::strtoul(line.c_str() + 8, nullptr, 10));
        }
        if (real_uid == uid) count += threads;
    }
    closedir(proc);
    return count;
}

}  // namespace

SandboxReport enter_sandbox(const SandboxSettings& settings) {
    SandboxReport report;
    bool root = geteuid() == 0;
    std::string why_not;
    report.private_network = enter_private_network(&why_not);

    test::Sandbox box;
    box.cpu_seconds = settings.cpu_seconds.value_or(
        static_cast<rlim_t>(static_cast<double>(kCpuSeconds) * test::time_scale()));
    box.data_bytes = settings.memory_mib ? *settings.memory_mib << 20 : kDataBytes;
    box.file_bytes = kFileBytes;
    box.no_core_dumps = true;
    box.first_to_die = true;
    std::optional<uid_t> uid;
    if (root) {
        // A uid of its own; in a container that maps few uids, "nobody".
        for (uid_t candidate : {settings.uid.value_or(kUidBase + static_cast<uid_t>(getpid())), uid_t{65534}}) {
            if (can_switch_to(candidate)) {
                uid = candidate;
                break;
            }
            if (settings.uid) break;  // the instructor's choice, or none
        }
    }
    if (uid) {
        box.uid = uid;
        box.gid = static_cast<gid_t>(*uid);
        box.max_processes = kProcesses;
        report.uid = uid;
    } else {
        // Servers run as the grader's own user: the limit is on top of what
        // that user already runs.
        box.max_processes = tasks_of(getuid()) + kProcesses;
    }
    test::set_sandbox(box);

    if (!report.private_network)
        report.notice = "note: no private network for the servers (" + why_not +
                        "); they share this machine's network, on loopback";
    if (root && !uid)
        report.notice += std::string(report.notice.empty() ? "note: " : "; ") +
                         "servers run as root: no other uid can be used here";
    return report;
}

}  // namespace muxlab::grader
