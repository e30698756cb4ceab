/**
 * @file sandbox.hpp
 * @brief The cage the grader puts submissions in: resource limits, another
 *        user, a network of their own.
 *
 * A submission is untrusted code, run once per test. What keeps it from
 * hanging, crashing or cheating the grader:
 * - RLIMIT_CPU, RLIMIT_NPROC (fork bombs), RLIMIT_DATA (memory hogs),
 *   RLIMIT_FSIZE and no core dumps, per server process (see muxlab::test::Sandbox);
 * - a wall-clock budget per test, and the stop of the server's whole process
 *   group and of every descendant at the end of each test (muxlab-grade);
 * - output capped at 1 MiB per stream, the rest drained and thrown away;
 * - when the grader runs as root: servers run as an unprivileged uid of
 *   their own, so they cannot signal or trace the grader, write its files
 *   (results included), or escape RLIMIT_NPROC (root is exempt from it);
 * - a private network namespace holding only loopback, for the grader and
 *   its servers: no network beyond it, and no port collisions between
 *   graders running side by side. It needs root, or unprivileged user
 *   namespaces; where neither is allowed the grader says so (unless --quiet)
 *   and servers share the machine's network, still listening on loopback.
 */
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <optional>
#include <string>

namespace muxlab::grader {

/// Instructors' overrides of the sandbox defaults.
struct SandboxSettings {
    std::optional<uid_t> uid;           ///< the uid servers run as when the grader is root
    std::optional<rlim_t> cpu_seconds;  ///< RLIMIT_CPU per server process
    std::optional<rlim_t> memory_mib;   ///< RLIMIT_DATA per server process, in MiB
};

/// What enter_sandbox() achieved.
struct SandboxReport {
    bool private_network = false;   ///< in a network namespace with only loopback
    std::optional<uid_t> uid;       ///< the uid servers run as, when not the grader's
    std::string notice;             ///< a one-line explanation of what could not be done
};

/**
 * @brief Moves this process into a private network namespace (when allowed)
 *        and sets the limits every server will run under.
 *
 * Call once, while the process has a single thread (unshare() requires it).
 * @param settings overrides; by default servers of a root grader run as a
 *        uid unique to this grader run, so parallel graders share no
 *        RLIMIT_NPROC count.
 */
SandboxReport enter_sandbox(const SandboxSettings& settings);

}  // namespace muxlab::grader
