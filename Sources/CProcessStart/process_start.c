// process_start.c — OpenMP's waiting policy, set before GNU OpenMP reads it.
//
// GNU OpenMP (the libgomp of Debian's LibTorch and of PyTorch's Linux wheels) makes idle intra-op
// threads busy-wait for 300,000 spins by default. On a 2-core machine they then take the cores from the
// data loader's decoding threads and from other processes: a MobileNetV2 training step measured 9–10 s
// under load, 2.2–2.5 s with OMP_WAIT_POLICY=PASSIVE. But PASSIVE alone puts every thread to sleep
// between two operations of a forward pass, and waking it costs more than a small operation:
// EfficientNet-B0's bf16 inference at batch 1 took 24–27 ms, against 15–17 ms with GOMP_SPINCOUNT=3000
// (docs/benchmarks.md). So where the user set no OMP_WAIT_POLICY, finetune sets PASSIVE and a spin count
// of 3,000 (unless the user set one). Values the user set are left alone.
//
// libgomp reads both variables once, in its own initialiser, from the environment the process started
// with: glibc's own initialiser points `environ` back at that block before any other library's runs, so
// a `setenv` made earlier is lost. The process therefore starts itself again with both variables added,
// and does it from the executable's `.preinit_array`, which runs before every shared library's
// initialiser (the System V ABI; glibc's _dl_init). LibTorch's initialisers (its operator registrations)
// thus run once. Until 2026-12-07 the CLI re-executed itself from `main`, after they had run.
#include "CProcessStart.h"

#include <string.h>
#include <unistd.h>

#if defined(__ELF__)
static int has_variable(char **envp, const char *prefix) {
    size_t length = strlen(prefix);
    for (char **entry = envp; *entry != NULL; entry++) {
        if (strncmp(*entry, prefix, length) == 0) return 1;
    }
    return 0;
}

// A help text computes nothing and is answered without starting again: `finetune help …`, or `-h`,
// `--help` or `--help-hidden` before any `--` (swift-argument-parser's help flags).
static int asks_for_help(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "help") == 0) return 1;
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "--help-hidden") == 0) return 1;
    }
    return 0;
}

// Runs before libc is initialised: it reads `envp` itself rather than `getenv`, keeps the new
// environment on the stack rather than calling malloc, and calls only execve (a system call).
static void prefer_short_openmp_waiting(int argc, char **argv, char **envp) {
    if (envp == NULL || has_variable(envp, "OMP_WAIT_POLICY=") || asks_for_help(argc, argv)) return;
    size_t count = 0;
    while (envp[count] != NULL) count++;
    char *environment[count + 3];
    memcpy(environment, envp, count * sizeof(char *));
    environment[count++] = (char *)"OMP_WAIT_POLICY=PASSIVE";
    if (!has_variable(envp, "GOMP_SPINCOUNT=")) environment[count++] = (char *)"GOMP_SPINCOUNT=" CPS_OPENMP_SPIN_COUNT;
    environment[count] = NULL;
    execve("/proc/self/exe", argv, environment);
    // execve failed (no /proc): carry on with OpenMP's default policy.
}

__attribute__((section(".preinit_array"), used))
static void (*const prefer_short_openmp_waiting_at_start)(int, char **, char **) = prefer_short_openmp_waiting;
#endif
