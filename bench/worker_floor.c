/*
 * How far rlog's worker thread is above the kernel's floor. A main thread on CPU 0 plays a
 * busy nginx worker: it spins, and every millisecond it "serves" RATE/1000 requests. In mode
 * `rlog` each request logs a 200-byte line through librlog (default limits, a TCP collector on
 * CPU 1); in mode `bare` it logs nothing and a plain thread on CPU 0 wakes every 5 ms (rlog's
 * pace under load, `worker::POLL`) and write()s what those 5 ms of requests would have logged
 * to the same kind of collector: the kernel's share of shipping those bytes, which any shipper
 * pays. Prints the sending thread's CPU per request (rlog's `rlog-worker` thread, or the plain
 * one, from /proc/self/task/TID/schedstat). POLL_MS sets how often the plain thread sends
 * (how the floor falls with bigger, rarer sends).
 *
 *   make build && cc -O2 -pthread -Iinclude -o build/worker_floor bench/worker_floor.c \
 *       -Ltarget/release -lrlog -Wl,-rpath,$PWD/target/release
 *   build/worker_floor rlog|bare [RATE=90000] [SECONDS=10] [POLL_MS=5]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "rlog.h"

#define LINE 200

static atomic_int port, bare_tid, done;
static long rate, poll_ms = 5;

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void *collector(void *arg) {
    pin(1);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof sa;
    if (l < 0 || bind(l, (void *)&sa, sizeof sa) || listen(l, 4) ||
        getsockname(l, (void *)&sa, &n)) {
        perror("collector");
        exit(1);
    }
    atomic_store(&port, ntohs(sa.sin_port));
    int c = accept(l, 0, 0);
    static char buf[1 << 16];
    while (read(c, buf, sizeof buf) > 0) {
    }
    return arg;
}

/* Mode `bare`: what a send every POLL_MS costs the kernel, with nothing of rlog's. */
static void *bare_sender(void *arg) {
    pin(0);
    atomic_store(&bare_tid, (int)syscall(SYS_gettid));
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons(atomic_load(&port)),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (s < 0 || connect(s, (void *)&sa, sizeof sa)) {
        perror("connect");
        exit(1);
    }
    size_t len = (size_t)(rate * poll_ms / 1000) * LINE;
    char *batch = malloc(len);
    memset(batch, 'x', len);
    while (!atomic_load(&done)) {
        usleep((useconds_t)poll_ms * 1000);
        for (size_t w = 0; w < len;) {
            ssize_t k = write(s, batch + w, len - w);
            if (k <= 0) {
                perror("write");
                exit(1);
            }
            w += (size_t)k;
        }
    }
    return arg;
}

/* Nanoseconds thread `tid` (or the thread named `name`) has run. */
static long long thread_ns(int tid, const char *name) {
    char path[300], buf[64];
    if (!tid) {
        DIR *d = opendir("/proc/self/task");
        struct dirent *e;
        while (d && (e = readdir(d))) {
            snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
            FILE *f = fopen(path, "r");
            if (f && fgets(buf, sizeof buf, f) && strncmp(buf, name, strlen(name)) == 0)
                tid = atoi(e->d_name);
            if (f)
                fclose(f);
        }
        if (d)
            closedir(d);
    }
    snprintf(path, sizeof path, "/proc/self/task/%d/schedstat", tid);
    FILE *f = fopen(path, "r");
    long long ns = -1;
    if (!f || fscanf(f, "%lld", &ns) != 1) {
        fprintf(stderr, "no thread %s\n", name);
        exit(1);
    }
    fclose(f);
    return ns;
}

int main(int argc, char **argv) {
    int use_rlog = argc > 1 && strcmp(argv[1], "rlog") == 0;
    if (argc < 2 || (!use_rlog && strcmp(argv[1], "bare") != 0)) {
        fprintf(stderr, "usage: worker_floor rlog|bare [RATE=90000] [SECONDS=10] [POLL_MS=5]\n");
        return 2;
    }
    rate = argc > 2 ? atol(argv[2]) : 90000;
    long secs = argc > 3 ? atol(argv[3]) : 10;
    poll_ms = argc > 4 ? atol(argv[4]) : 5;
    if (rate < 1000 || secs < 1 || poll_ms < 1) {
        fprintf(stderr, "RATE must be >= 1000, SECONDS and POLL_MS >= 1\n");
        return 2;
    }
    pin(0);
    pthread_t th;
    pthread_create(&th, 0, collector, 0);
    while (!atomic_load(&port))
        usleep(1000);
    char line[LINE];
    memset(line, 'x', LINE - 1);
    line[LINE - 1] = '\n';
    if (use_rlog) {
        char cfg[128], err[256];
        snprintf(cfg, sizeof cfg, "host = 127.0.0.1\nport = %d\n", atomic_load(&port));
        if (rlog_init(cfg, err, sizeof err) != 0) {
            fprintf(stderr, "rlog_init: %s\n", err);
            return 1;
        }
        rlog_log(line, LINE); /* starts the worker thread */
        rlog_flush();
    } else {
        pthread_create(&th, 0, bare_sender, 0);
        while (!atomic_load(&bare_tid))
            usleep(1000);
    }
    long long t0 = use_rlog ? thread_ns(0, "rlog-worker") : thread_ns(atomic_load(&bare_tid), "");
    long per_ms = rate / 1000, served = 0;
    double start = now(), next = start;
    while (next < start + (double)secs) {
        next += 0.001;
        while (now() < next) {
        }
        for (long i = 0; i < per_ms; i++) {
            if (use_rlog)
                rlog_log(line, LINE);
            served++;
        }
    }
    long long t1 = use_rlog ? thread_ns(0, "rlog-worker") : thread_ns(atomic_load(&bare_tid), "");
    atomic_store(&done, 1);
    printf("%s%s%s%s: %ld requests at %ld/s, sending thread %.3f us/request\n", argv[1],
           use_rlog ? "" : ", a send every ", use_rlog ? "" : argc > 4 ? argv[4] : "5", use_rlog ? "" : " ms", served,
           rate, (double)(t1 - t0) / 1e3 / (double)served);
    if (use_rlog) {
        struct rlog_stats st;
        rlog_flush();
        if (rlog_stats(&st, sizeof st) != 0) {
            fprintf(stderr, "rlog_stats failed\n");
            return 1;
        }
        printf("  logged %llu, sent %llu, lost %llu: %s\n", (unsigned long long)st.logged,
               (unsigned long long)st.sent, (unsigned long long)st.lost,
               rlog_shutdown(-1) == 0 ? "all delivered" : "NOT all delivered");
    }
    return 0;
}
