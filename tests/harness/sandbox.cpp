#include "harness/sandbox.hpp"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>

namespace muxlab::test {
namespace {

Sandbox& current_sandbox() {
    static Sandbox box;
    return box;
}

std::vector<SandboxEvent>& events() {
    static std::vector<SandboxEvent> list;
    return list;
}

/// True when every directory above @p path and the file itself can be
/// searched/executed by a user who is neither owner nor in the group.
bool reachable_by_others(const std::string& path) {
    char* real = realpath(path.c_str(), nullptr);
    if (real == nullptr) return true;  // let execv report the problem
    std::string full = real;
    free(real);
    for (size_t slash = full.find('/', 1);; slash = full.find('/', slash + 1)) {
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

void set_sandbox(const Sandbox& box) { current_sandbox() = box; }
const Sandbox& sandbox() { return current_sandbox(); }

ChildPlan plan_for(const std::string& program, const TestLimits& limits) {
    const Sandbox& box = current_sandbox();
    ChildPlan plan;
    auto add = [&](int resource, std::optional<rlim_t> test_value, std::optional<rlim_t> sandbox_value) {
        std::optional<rlim_t> value = test_value ? test_value : sandbox_value;
        if (value) plan.limits.emplace_back(resource, *value);
    };
    add(RLIMIT_NOFILE, limits.max_open_files, std::nullopt);
    add(RLIMIT_CPU, limits.cpu_seconds, box.cpu_seconds);
    add(RLIMIT_NPROC, limits.max_processes, box.max_processes);
    add(RLIMIT_FSIZE, std::nullopt, box.file_bytes);
    if (box.no_core_dumps) add(RLIMIT_CORE, rlim_t{0}, std::nullopt);
    // Sanitizer runtimes reserve terabytes of address space for shadow memory
    // (never touched, but counted by RLIMIT_AS and RLIMIT_DATA), so a memory
    // limit would stop them before main(). They run without one; the wall-clock
    // and CPU limits still hold.
    bool sanitized = (limits.address_space || box.data_bytes) && is_sanitizer_build(program);
    if (!sanitized) {
        add(RLIMIT_AS, limits.address_space, std::nullopt);
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

int apply_plan(const ChildPlan& plan) {
    for (const auto& [resource, value] : plan.limits) {
        rlimit r{value, value};
        if (resource == RLIMIT_CPU) r.rlim_max = value + 2;  // SIGXCPU first, SIGKILL 2 s later
        setrlimit(resource, &r);
    }
    if (plan.first_to_die) {
        int adj = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        if (adj >= 0) {
            if (write(adj, "1000", 4) < 0) {
                // best effort: the limits above still hold
            }
            close(adj);
        }
    }
    // Another user: it cannot signal or trace the grader, write the grader's
    // files, or escape RLIMIT_NPROC (which the kernel does not apply to root).
    if (plan.switch_user && (setgroups(0, nullptr) != 0 || setresgid(plan.gid, plan.gid, plan.gid) != 0 ||
                             setresuid(plan.uid, plan.uid, plan.uid) != 0))
        return -errno;
    return 0;
}

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

void add_sandbox_event(bool violation, const std::string& text) {
    for (const SandboxEvent& event : events())
        if (event.text == text) return;
    events().push_back({violation, text});
}

std::vector<SandboxEvent> take_sandbox_events() {
    std::vector<SandboxEvent> taken;
    taken.swap(events());
    return taken;
}

}  // namespace muxlab::test
