#include "harness/server_process.hpp"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <fstream>
#include <iterator>
#include <sstream>

namespace muxlab::test {
namespace {

constexpr size_t kOutputCap = 1 << 20;  // keep at most 1 MiB of each stream

void close_fd(int& fd) {
    if (fd >= 0) ::close(fd);
    fd = -1;
}

ExitReport report_from_status(int status) {
    ExitReport report;
    if (WIFEXITED(status)) {
        report.exited = true;
        report.exit_status = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        report.signaled = true;
        report.signal = WTERMSIG(status);
    }
    return report;
}

/// Pids of the ServerProcess objects alive in this process.
std::set<pid_t>& live_servers() {
    static std::set<pid_t> pids;
    return pids;
}

std::vector<pid_t> children_of(const std::string& task_dir);

std::vector<pid_t> children_of_self() { return children_of("/proc/self/task"); }

/// Every live descendant of this process.
std::vector<pid_t> descendants_of_self() {
    std::vector<pid_t> all = children_of_self();
    for (size_t i = 0; i < all.size() && all.size() < 100000; ++i) {
        std::vector<pid_t> more = children_of("/proc/" + std::to_string(all[i]) + "/task");
        all.insert(all.end(), more.begin(), more.end());
    }
    return all;
}

/// The parent of @p pid, from /proc/PID/stat (0 when it is gone).
pid_t getppid_of(pid_t pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    size_t end_of_name = text.rfind(')');
    if (end_of_name == std::string::npos) return 0;
    std::istringstream fields(text.substr(end_of_name + 1));
    char state = 0;
    pid_t parent = 0;
    fields >> state >> parent;
    return parent;
}

std::vector<SandboxEvent>& events() {
    static std::vector<SandboxEvent> list;
    return list;
}

void add_event(bool violation, const std::string& text) {
    for (const SandboxEvent& event : events())
        if (event.text == text) return;
    events().push_back({violation, text});
}

Sandbox& current_sandbox() {
    static Sandbox sandbox;
    return sandbox;
}

/// What the child applies between fork and exec, computed before the fork
/// (the child of a threaded process may not allocate).
struct ChildPlan {
    std::vector<std::pair<int, rlim_t>> limits;
    bool first_to_die = false;
    bool switch_user = false;
    uid_t uid = 0;
    gid_t gid = 0;
};

ChildPlan plan_for(const std::string& program, const LaunchOptions& options) {
    const Sandbox& box = current_sandbox();
    ChildPlan plan;
    auto add = [&](int resource, std::optional<rlim_t> test_value, std::optional<rlim_t> sandbox_value) {
        std::optional<rlim_t> value = test_value ? test_value : sandbox_value;
        if (value) plan.limits.emplace_back(resource, *value);
    };
    add(RLIMIT_NOFILE, options.max_open_files, std::nullopt);
    add(RLIMIT_CPU, options.cpu_seconds, box.cpu_seconds);
    add(RLIMIT_NPROC, options.max_processes, box.max_processes);
    add(RLIMIT_FSIZE, std::nullopt, box.file_bytes);
    if (box.no_core_dumps) add(RLIMIT_CORE, rlim_t{0}, std::nullopt);
    // Sanitizer runtimes reserve terabytes of address space for shadow memory
    // (never touched, but counted by RLIMIT_AS and RLIMIT_DATA), so a memory
    // limit would stop them before main(). They run without one; the wall-clock
    // and CPU limits still hold.
    bool sanitized = (options.address_space || box.data_bytes) && is_sanitizer_build(program);
    if (!sanitized) {
        add(RLIMIT_AS, options.address_space, std::nullopt);
        // RLIMIT_DATA rather than RLIMIT_AS: it bounds what a leak or a hog can
        // allocate (heap, anonymous mappings) without counting code, shared
        // libraries and reserved-but-unused address space.
        add(RLIMIT_DATA, std::nullopt, box.data_bytes);
    }
    plan.first_to_die = box.first_to_die;
    if (box.uid && geteuid() == 0) {
        plan.switch_user = true;
        plan.uid = *box.uid;
        plan.gid = box.gid.value_or(static_cast<gid_t>(*box.uid));
    }
    return plan;
}

/// Runs in the forked child: only async-signal-safe calls until execv.
[[noreturn]] void exec_server(const char* path, const std::vector<char*>& argv, const ChildPlan& plan,
                              int out, int err, int exec_error) {
    // A session of its own: its own process group (so the harness can signal
    // everything it spawned at once) and no controlling terminal (so it
    // cannot write to the grader's terminal through /dev/tty).
    setsid();
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction defaults {};
    defaults.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) sigaction(sig, &defaults, nullptr);  // SIGPIPE too

    int null = open("/dev/null", O_RDONLY);
    dup2(null, 0);
    dup2(out, 1);
    dup2(err, 2);
    // Only fds 0-2 are inherited; exec_error is close-on-exec and stays until execv.
    if (exec_error > 3) close_range(3, static_cast<unsigned>(exec_error) - 1, 0);
    close_range(static_cast<unsigned>(exec_error) + 1, ~0U, 0);

    for (const auto& [resource, value] : plan.limits) {
        rlimit r{value, value};
        if (resource == RLIMIT_CPU) r.rlim_max = value + 2;  // SIGXCPU first, SIGKILL 2 s later
        setrlimit(resource, &r);
    }
    if (plan.first_to_die) {
        int adj = open("/proc/self/oom_score_adj", O_WRONLY);
        if (adj >= 0) {
            ssize_t ignored = write(adj, "1000", 4);
            (void)ignored;
            ::close(adj);
        }
    }
    int error = 0;
    // Another user: it cannot signal or trace the grader, write the grader's
    // files, or escape RLIMIT_NPROC (which the kernel does not apply to root).
    if (plan.switch_user && (setgroups(0, nullptr) != 0 || setresgid(plan.gid, plan.gid, plan.gid) != 0 ||
                             setresuid(plan.uid, plan.uid, plan.uid) != 0)) {
        error = -errno;  // negative: the switch failed, not the exec
    } else {
        execv(path, argv.data());
        error = errno;
    }
    ssize_t ignored = write(exec_error, &error, sizeof error);
    (void)ignored;
    _exit(127);
}

/// True when every directory above @p path and the file itself can be
/// searched/executed by a user who is neither owner nor in the group.
bool reachable_by_others(const std::string& path) {
    char* real = realpath(path.c_str(), nullptr);
    if (real == nullptr) return true;  // let execv report the problem
    std::string full = real;
    free(real);
    for (size_t slash = full.find('/', 1); ; slash = full.find('/', slash + 1)) {
        std::string prefix = slash == std::string::npos ? full : full.substr(0, slash);
        struct stat info {};
        if (stat(prefix.c_str(), &info) != 0 || (info.st_mode & S_IXOTH) == 0) return false;
        if (slash == std::string::npos) return true;
    }
}

/// Copies of programs made for the sandbox user, removed when the grader exits.
struct Copies {
    pid_t owner = 0;
    std::string dir;
    std::map<std::string, std::string> by_program;
    std::map<std::string, bool> sanitizer;
};
Copies& copies() {
    static Copies state;
    return state;
}

void remove_copies() {
    Copies& state = copies();
    if (state.dir.empty() || getpid() != state.owner) return;  // forked test processes keep them
    for (const auto& entry : state.by_program) unlink(entry.second.c_str());
    rmdir(state.dir.c_str());
}

std::string copy_for_sandbox(const std::string& program) {
    Copies& state = copies();
    if (state.dir.empty()) {
        const char* tmp = std::getenv("TMPDIR");
        std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/muxlab-bin-XXXXXX";
        if (mkdtemp(pattern.data()) == nullptr) return program;
        chmod(pattern.c_str(), 0711);
        state.dir = pattern;
        state.owner = getpid();
        std::atexit(remove_copies);
    }
    std::string copy = state.dir + "/" + std::to_string(state.by_program.size()) + "-server";
    std::ifstream in(program, std::ios::binary);
    std::ofstream out(copy, std::ios::binary);
    out << in.rdbuf();
    out.close();
    if (!in || !out || chmod(copy.c_str(), 0755) != 0) return program;
    return copy;
}

}  // namespace

void set_sandbox(const Sandbox& sandbox) { current_sandbox() = sandbox; }

std::vector<SandboxEvent> take_sandbox_events() {
    std::vector<SandboxEvent> taken;
    taken.swap(events());
    return taken;
}
const Sandbox& sandbox() { return current_sandbox(); }

std::string prepare_program(const std::string& program) {
    Copies& state = copies();
    auto known = state.by_program.find(program);
    if (known != state.by_program.end()) return known->second;
    std::string runnable = program;
    const Sandbox& box = current_sandbox();
    if (box.uid && geteuid() == 0 && access(program.c_str(), X_OK) == 0 && !reachable_by_others(program))
        runnable = copy_for_sandbox(program);
    if (runnable != program) state.by_program[program] = runnable;
    is_sanitizer_build(runnable);  // cached for the test processes forked later
    return runnable;
}

bool is_sanitizer_build(const std::string& program) {
    auto& cache = copies().sanitizer;
    auto known = cache.find(program);
    if (known != cache.end()) return known->second;
    // The runtimes' entry points are named in the symbol table of every
    // instrumented binary, whether the runtime is linked statically or not.
    static const char* const kMarks[] = {"__asan_init", "__tsan_init", "__msan_init", "__hwasan_init"};
    std::ifstream file(program, std::ios::binary);
    std::string window;
    char chunk[1 << 16];
    bool found = false;
    while (!found && file.read(chunk, sizeof chunk).gcount() > 0) {
        window.append(chunk, static_cast<size_t>(file.gcount()));
        for (const char* mark : kMarks) found = found || window.find(mark) != std::string::npos;
        window.erase(0, window.size() > 32 ? window.size() - 32 : 0);  // a mark may straddle chunks
    }
    cache[program] = found;
    return found;
}

std::string ExitReport::describe() const {
    std::string text = "ended in an unknown way";
    if (exited) {
        text = "exited with status " + std::to_string(exit_status);
    } else if (signaled) {
        const char* name = sigabbrev_np(signal);
        text = name != nullptr ? std::string("was killed by SIG") + name
                               : "was killed by signal " + std::to_string(signal);
    }
    return needed_sigkill ? "ignored SIGTERM and " + text : text;
}

ServerProcess::ServerProcess(const std::string& program, const LaunchOptions& options) {
    std::vector<std::string> words = {program, "-p", "0"};
    words.insert(words.end(), options.args.begin(), options.args.end());
    std::vector<char*> argv;
    for (std::string& word : words) argv.push_back(word.data());
    argv.push_back(nullptr);

    if (access(program.c_str(), F_OK) != 0) {  // as the grader: the sandbox user may not see it
        int error = errno;
        failure_ = "cannot run server '" + program + "': " + std::strerror(error) +
                   (error == ENOENT ? " (was it built? check the path)" : "");
        return;
    }
    int out[2], err[2], exec_error[2];
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0 ||
        pipe2(exec_error, O_CLOEXEC) != 0 || pipe2(wake_pipe_, O_CLOEXEC) != 0) {
        failure_ = std::string("harness: pipe: ") + std::strerror(errno);
        return;
    }
    std::string runnable = prepare_program(program);
    ChildPlan plan = plan_for(runnable, options);
    pid_ = fork();
    if (pid_ == 0) exec_server(runnable.c_str(), argv, plan, out[1], err[1], exec_error[1]);
    ::close(out[1]);
    ::close(err[1]);
    ::close(exec_error[1]);
    if (pid_ < 0) {
        failure_ = std::string("harness: fork: ") + std::strerror(errno);
        ::close(out[0]);
        ::close(err[0]);
        ::close(exec_error[0]);
        return;
    }
    // The child calls setsid() before execv, so once the exec_error pipe
    // reports (EOF on success), its process group exists and kill(-pid) works.
    pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
    live_servers().insert(pid_);
    stdout_pipe_ = out[0];
    stderr_pipe_ = err[0];

    int exec_errno = 0;
    ssize_t got = read(exec_error[0], &exec_errno, sizeof exec_errno);  // EOF once execv succeeds
    ::close(exec_error[0]);
    drainer_ = std::thread([this] { drain_output(); });
    if (got == sizeof exec_errno && exec_errno < 0) {
        failure_ = "harness: cannot switch to the sandbox user (uid " + std::to_string(plan.uid) +
                   "): " + std::strerror(-exec_errno);
        stop();
        return;
    }
    if (got == sizeof exec_errno) {
        failure_ = "cannot run server '" + program + "': " + std::strerror(exec_errno) +
                   (exec_errno == ENOENT ? " (was it built? check the path)" : "");
        stop();
        return;
    }
    ready_ = wait_for_ready_lines(options);
}

ServerProcess::~ServerProcess() {
    stop();
    live_servers().erase(pid_);
    if (wake_pipe_[1] >= 0) {
        char byte = 0;
        ssize_t ignored = write(wake_pipe_[1], &byte, 1);
        (void)ignored;
    }
    if (drainer_.joinable()) drainer_.join();
    close_fd(stdout_pipe_);
    close_fd(stderr_pipe_);
    close_fd(pidfd_);
    close_fd(wake_pipe_[0]);
    close_fd(wake_pipe_[1]);
}

void ServerProcess::drain_output() {
    bool out_open = true, err_open = true;
    char buffer[65536];
    while (out_open || err_open) {
        pollfd fds[3] = {{out_open ? stdout_pipe_ : -1, POLLIN, 0},
                         {err_open ? stderr_pipe_ : -1, POLLIN, 0},
                         {wake_pipe_[0], POLLIN, 0}};
        if (poll(fds, 3, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (fds[2].revents != 0) break;  // the owner is shutting down
        for (int i = 0; i < 2; ++i) {
            if (fds[i].revents == 0) continue;
            ssize_t n = read(fds[i].fd, buffer, sizeof buffer);
            std::lock_guard<std::mutex> lock(mutex_);
            if (n <= 0) {
                (i == 0 ? out_open : err_open) = false;
                if (i == 0) stdout_closed_ = true;
            } else {
                // Past the cap the bytes are read and thrown away: a server
                // that logs without end neither blocks on a full pipe nor
                // grows the grader's memory.
                std::string& sink = i == 0 ? stdout_ : stderr_;
                size_t room = kOutputCap > sink.size() ? kOutputCap - sink.size() : 0;
                size_t kept = std::min(room, static_cast<size_t>(n));
                sink.append(buffer, kept);
                discarded_ += static_cast<size_t>(n) - kept;
            }
            output_arrived_.notify_all();
        }
    }
    std::lock_guard<std::mutex> lock(mutex_);
    output_closed_ = true;
    output_arrived_.notify_all();
}

bool ServerProcess::wait_for_ready_lines(const LaunchOptions& options) {
    Deadline deadline(startup_limit());
    size_t line_start = 0;
    for (const std::string& prefix : options.ready_prefixes) {
        std::unique_lock<std::mutex> lock(mutex_);
        size_t newline;
        while ((newline = stdout_.find('\n', line_start)) == std::string::npos) {
            if (output_closed_ || stdout_closed_ || deadline.expired()) break;
            if (stdout_.size() >= kOutputCap) break;  // a megabyte and still no line
            output_arrived_.wait_for(lock, Millis(std::min(deadline.remaining_ms(), 50)));
            if (!output_closed_ && pidfd_ >= 0) {
                pollfd p{pidfd_, POLLIN, 0};
                if (poll(&p, 1, 0) == 1 && stdout_.find('\n', line_start) == std::string::npos) {
                    // Exited; let the drainer collect what is left, briefly.
                    output_arrived_.wait_for(lock, Millis(50));
                    if (stdout_.find('\n', line_start) == std::string::npos) break;
                }
            }
        }
        std::string expected = "'" + prefix + " HOST:PORT'";
        if (newline == std::string::npos) {
            std::string seen = stdout_.substr(line_start);
            lock.unlock();
            auto exit = wait_exit(Millis(200));
            failure_ = "the server did not print its ready line " + expected;
            if (exit) failure_ += ": it " + exit->describe();
            else if (deadline.expired()) failure_ += " within " + std::to_string(startup_limit().count() / 1000) + " s";
            else if (stdout_closed_) failure_ += ": it closed its stdout";
            else failure_ += ": it wrote a megabyte on stdout without a newline";
            if (seen.size() > 200) seen = seen.substr(0, 200) + "...";
            if (!seen.empty()) failure_ += "; stdout so far: '" + seen + "'";
            failure_ += stderr_tail();
            return false;
        }
        std::string line = stdout_.substr(line_start, newline - line_start);
        line_start = newline + 1;
        lock.unlock();
        size_t colon = line.rfind(':');
        Endpoint endpoint;
        bool ok = line.rfind(prefix + " ", 0) == 0 && colon != std::string::npos &&
                  colon > prefix.size() + 1;
        if (ok) {
            endpoint.host = line.substr(prefix.size() + 1, colon - prefix.size() - 1);
            if (endpoint.host.size() > 2 && endpoint.host.front() == '[') endpoint.host = endpoint.host.substr(1, endpoint.host.size() - 2);
            std::string port = line.substr(colon + 1);
            ok = !port.empty() && port.size() <= 5 &&
                 port.find_first_not_of("0123456789") == std::string::npos;
            if (ok) endpoint.port = static_cast<unsigned>(std::stoul(port));
            ok = ok && endpoint.port > 0 && endpoint.port < 65536;
        }
        if (!ok) {
            failure_ = "the server's ready line was '" + line + "', expected " + expected +
                       " with the real port (the server was started with -p 0)" + stderr_tail();
            return false;
        }
        endpoints_.push_back(endpoint);
    }
    return true;
}

bool ServerProcess::running() { return !wait_exit(Millis(0)).has_value(); }

std::optional<ExitReport> ServerProcess::wait_exit(Millis budget) {
    if (exit_) return exit_;
    if (pid_ <= 0) return std::nullopt;
    pollfd p{pidfd_, POLLIN, 0};
    int ready = pidfd_ >= 0 ? poll(&p, 1, static_cast<int>(budget.count())) : 1;
    if (ready <= 0) return std::nullopt;
    int status = 0;
    pid_t got = waitpid(pid_, &status, pidfd_ >= 0 ? WNOHANG : 0);
    if (got != pid_) return std::nullopt;
    exit_ = report_from_status(status);
    note_exit();
    return exit_;
}

// A server that dies by a signal the harness did not send crashed or hit a
// sandbox limit: the test's own message may not say so, so the grader adds it.
void ServerProcess::note_exit() {
    if (!exit_ || !exit_->signaled || (signalled_ && (exit_->signal == SIGTERM || exit_->signal == SIGKILL)))
        return;
    std::string how = "the server " + exit_->describe();
    switch (exit_->signal) {
        case SIGXCPU: how += ": it used up its CPU-time limit (a busy loop?)"; break;
        case SIGXFSZ: how += ": it wrote a file beyond the size limit"; break;
        case SIGPIPE: how += ": it wrote to a socket its client had closed; send with MSG_NOSIGNAL or ignore SIGPIPE"; break;
        case SIGSEGV: case SIGBUS: case SIGABRT: case SIGFPE: case SIGILL:
            how += ": it crashed; run it under gdb or with `make sanitize` to find where"; break;
        default: break;
    }
    add_event(false, how);
}

std::optional<ExitReport> ServerProcess::terminate(Millis budget) {
    if (!exit_ && pid_ > 0) {
        signalled_ = true;
        kill(pid_, SIGTERM);
    }
    return wait_exit(budget);
}

ExitReport ServerProcess::stop() {
    if (pid_ <= 0) return {};
    if (!signalled_) {
        // Processes that left the server's session (setsid), or outlived
        // the server and were reparented to us, are a server gone to the
        // background: the grader could neither watch nor stop it through its
        // pid. That breaks the contract (stay in the foreground until SIGTERM).
        // (Processes a test starts itself stay in the test's session.)
        bool ended = wait_exit(Millis(0)).has_value();
        pid_t own_session = getsid(0);
        size_t escaped = 0;
        for (pid_t process : descendants_of_self()) {
            if (live_servers().count(process) != 0) continue;
            pid_t session = getsid(process);
            if (session < 0) continue;  // gone meanwhile
            bool left_session = session != pid_ && session != own_session && live_servers().count(session) == 0;
            bool orphan = ended && session == pid_ && getppid_of(process) == getpid();
            if (left_session || orphan) ++escaped;
        }
        if (escaped > 0)
            add_event(true, "the server went into the background (daemonized): " + std::to_string(escaped) +
                                " process(es) it started left its session or outlived it" +
                                (ended ? " (the server itself " + exit_->describe() + ")" : std::string()) +
                                ". A server stays in the foreground until SIGTERM; the grader stops all it started");
    }
    if (size_t dropped = output_discarded(); dropped > 0)
        add_event(false, "the server wrote more than " + std::to_string((dropped + kOutputCap) >> 20) +
                             " MiB of output (endless logging?); the grader kept the first MiB of each stream");
    signalled_ = true;
    if (!exit_) {
        kill(-pid_, SIGTERM);
        if (!wait_exit(scaled(Millis(2000)))) {
            kill(-pid_, SIGKILL);
            wait_exit(Millis(10000));
            if (exit_) exit_->needed_sigkill = true;
        }
    }
    kill(-pid_, SIGKILL);  // whatever is left of its process group
    reap_all_children();   // and descendants that left the group (reparented to us)
    return exit_.value_or(ExitReport{});
}

bool ServerProcess::wait_output_closed(Millis budget) {
    std::unique_lock<std::mutex> lock(mutex_);
    return output_arrived_.wait_for(lock, budget, [this] { return output_closed_; });
}

std::string ServerProcess::stderr_text() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stderr_;
}

std::string ServerProcess::stdout_text() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stdout_;
}

size_t ServerProcess::output_discarded() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return discarded_;
}

std::string ServerProcess::stderr_tail(size_t max_lines) const {
    constexpr size_t kLineCap = 240;  // a "line" of endless output is cut, not pasted whole
    std::vector<std::string> lines;
    std::istringstream text(stderr_text());
    for (std::string line; std::getline(text, line);)
        lines.push_back(line.size() > kLineCap ? line.substr(0, kLineCap) + "..." : line);
    std::string tail;
    if (!lines.empty()) {
        tail = "\n  server stderr (last lines):";
        for (size_t i = lines.size() > max_lines ? lines.size() - max_lines : 0; i < lines.size(); ++i)
            tail += "\n    | " + lines[i];
    }
    if (size_t dropped = output_discarded(); dropped > 0)
        tail += "\n  the server wrote " + std::to_string((dropped + kOutputCap) >> 20) +
                " MiB or more of output; the grader kept the first MiB of each stream";
    // Say so when a sandbox limit ended the server: the student sees a
    // busy loop or a runaway file for what it is, not as a mysterious crash.
    if (exit_ && exit_->signaled && exit_->signal == SIGXCPU)
        tail += "\n  the server was killed by SIGXCPU: it used up its CPU-time limit (a busy loop?)";
    if (exit_ && exit_->signaled && exit_->signal == SIGXFSZ)
        tail += "\n  the server was killed by SIGXFSZ: it wrote a file beyond the grader's size limit";
    return tail;
}

void become_subreaper() { prctl(PR_SET_CHILD_SUBREAPER, 1); }

namespace {
std::vector<pid_t> children_of(const std::string& task_dir) {
    std::vector<pid_t> children;
    DIR* tasks = opendir(task_dir.c_str());
    if (tasks == nullptr) return children;
    while (dirent* entry = readdir(tasks)) {
        if (entry->d_name[0] == '.') continue;
        std::ifstream file(task_dir + "/" + entry->d_name + "/children");
        for (pid_t child; file >> child;) children.push_back(child);
    }
    closedir(tasks);
    return children;
}
}  // namespace

void reap_all_children() {
    // Killing a child reparents its own children to us (we are a subreaper),
    // so repeat until nothing is left; bounded in case something keeps forking.
    for (int round = 0; round < 1000; ++round) {
        std::vector<pid_t> children = children_of_self();
        if (children.empty()) break;
        for (pid_t child : children) {
            kill(child, SIGKILL);
            waitpid(child, nullptr, 0);
        }
    }
    while (waitpid(-1, nullptr, WNOHANG) > 0) {
    }
}

}  // namespace muxlab::test
