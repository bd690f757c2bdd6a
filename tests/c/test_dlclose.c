/*
 * A host that dlopen()s librlog, starts a logger and dlclose()s it (LuaJIT does so when its VM is
 * closed at exit) must not have the library's code unmapped under the worker thread: rlog pins
 * itself with RTLD_NODELETE, and the process still exits cleanly, delivering at exit.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s path/to/librlog.so\n", argv[0]);
        return 2;
    }
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    int (*init)(const char *, char *, size_t) = (int (*)(const char *, char *, size_t))dlsym(h, "rlog_init");
    int (*log)(const char *, size_t) = (int (*)(const char *, size_t))dlsym(h, "rlog_log");
    char err[256];
    int failed = 0;
    if (!init || !log || init("host = 127.0.0.1\nport = 9\ntimeout = 100\nmax_retry_times = 0", err, sizeof err) != 0) {
        fprintf(stderr, "FAIL: init\n");
        failed++;
    }
    if (log("kept across dlclose\n", 20) != 20) {
        fprintf(stderr, "FAIL: log\n");
        failed++;
    }
    dlclose(h);
    if (!dlopen(argv[1], RTLD_NOW | RTLD_NOLOAD)) {
        fprintf(stderr, "FAIL: librlog was unloaded while its worker thread runs\n");
        failed++;
    }
    printf("dlclose: %d passed, %d failed\n", 3 - failed, failed);
    return failed ? 1 : 0; /* exit() runs rlog's exit flush: it must not crash */
}
