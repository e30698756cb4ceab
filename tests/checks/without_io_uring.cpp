// without_io_uring COMMAND [ARGS...]: runs COMMAND with io_uring_setup()
// refused (EPERM), as on a machine where /proc/sys/kernel/io_uring_disabled
// is 2 or a container's seccomp profile forbids it. A seccomp filter is
// inherited by every child, so the grader and the servers it starts see the
// same refusal. Built and used by tests/checks/11-io-uring-disabled.sh.
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>
#include <cstdio>

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: without_io_uring COMMAND [ARGS...]\n");
        return 2;
    }
    sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog program{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) {
        std::perror("without_io_uring: seccomp");
        return 1;
    }
    execvp(argv[1], argv + 1);
    std::perror("without_io_uring: exec");
    return 127;
}
