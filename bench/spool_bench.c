/*
 * Spool throughput (SPEC §6 "Spool"), from the host's side, through librlog's C ABI.
 *
 *   write DIR M SYNC   the collector is down (a bound, never listening socket on 127.0.0.1: every
 *                      connect is refused; its port is printed), max_retry_times = 0, drop_limit
 *                      256 MiB; logs M messages of 200 bytes (199 + '\n') as fast as rlog_log
 *                      accepts them and times until rlog_stats says spooled == M. SYNC is batch,
 *                      interval or none. Then times an fsync of every file of the spool on top
 *                      (what none/interval leave to the kernel) and ends with _exit, leaving
 *                      the spool as a dead process's.
 *   replay DIR M PORT [SYNC]  the collector comes back on the same port (the spool is kept per
 *                      output, named by its address): a thread here that reads, discards and
 *                      counts newlines, listening before rlog_init; times from rlog_init until
 *                      it has counted M lines (the worker adopts the dead process's spool,
 *                      checks it, and delivers it). SYNC (default batch) is the replaying
 *                      process's spool_sync: how its commits are made durable. `cold` first
 *                      drops the spool's files from the page cache (posix_fadvise DONTNEED).
 *
 * Also prints what the spool did to the disk, counted by wrapping the two calls librlog makes for
 * it (this program defines pwrite64 and fdatasync, which the loader binds librlog's calls to):
 * writes, bytes per write, fdatasyncs and the time spent in them. `bench/spool_bench.sh` builds
 * it and runs the three modes next to dd writing the same bytes in the same block size.
 *
 *   make build && cc -O2 -Iinclude -o build/spool_bench bench/spool_bench.c \
 *       -Ltarget/release -lrlog -Wl,-rpath,$PWD/target/release -lpthread
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "rlog.h"

#define MSG 200

static uint64_t n_pwrite, pwrite_bytes, n_small, n_fdatasync, fdatasync_ns;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* librlog's spool writes segments with pwrite64 and syncs them with fdatasync: count both. */
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    ssize_t r = syscall(SYS_pwrite64, fd, buf, n, off);
    if (r > 0 && r < 512) /* a segment header or a ledger slot */
        __atomic_fetch_add(&n_small, 1, __ATOMIC_RELAXED);
    else if (r > 0) {
        __atomic_fetch_add(&n_pwrite, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&pwrite_bytes, (uint64_t)r, __ATOMIC_RELAXED);
    }
    return r;
}

int fdatasync(int fd)
{
    double t = now();
    int r = syscall(SYS_fdatasync, fd);
    __atomic_fetch_add(&n_fdatasync, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&fdatasync_ns, (uint64_t)((now() - t) * 1e9), __ATOMIC_RELAXED);
    return r;
}

static void io_report(double secs)
{
    uint64_t w = __atomic_load_n(&n_pwrite, __ATOMIC_RELAXED);
    uint64_t b = __atomic_load_n(&pwrite_bytes, __ATOMIC_RELAXED);
    uint64_t s = __atomic_load_n(&n_fdatasync, __ATOMIC_RELAXED);
    uint64_t ns = __atomic_load_n(&fdatasync_ns, __ATOMIC_RELAXED);
    printf("disk: %llu pwrite of records, %llu bytes (%.0f bytes each), %llu small pwrite (headers, ledger), "
           "%llu fdatasync (%.2f ms each, %.0f%% of the time)\n",
           (unsigned long long)w, (unsigned long long)b, w ? (double)b / w : 0.0,
           (unsigned long long)__atomic_load_n(&n_small, __ATOMIC_RELAXED), (unsigned long long)s,
           s ? ns / 1e6 / s : 0.0, secs > 0 ? ns / 1e7 / secs : 0.0);
}

static int fsync_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb, (void)ftw;
    int fd = open(path, (type == FTW_D ? O_RDONLY | O_DIRECTORY : O_RDONLY));
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    return 0;
}

/* The message: a 12-digit decimal counter, then 'x's, then '\n' (200 bytes); next() counts up in
 * place, so that making a message costs next to nothing beside rlog_log. */
static int evict_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb, (void)ftw;
    if (type == FTW_F) {
        int fd = open(path, O_RDONLY);
        if (fd >= 0) {
            fdatasync(fd); /* clean pages only are dropped */
            posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
            close(fd);
        }
    }
    return 0;
}

static void fill(char *msg)
{
    memset(msg, 'x', MSG - 1);
    memset(msg, '0', 12);
    msg[MSG - 1] = '\n';
}

static void next(char *msg)
{
    for (int k = 11; k >= 0 && ++msg[k] > '9'; k--)
        msg[k] = '0';
}

static int do_write(const char *dir, long m, const char *sync)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) || getsockname(s, (struct sockaddr *)&a, &al)) {
        perror("refusing port");
        return 1;
    }
    char cfg[1024], err[256], msg[MSG];
    snprintf(cfg, sizeof cfg,
             "host = 127.0.0.1\nport = %d\nspool = %s\nspool_sync = %s\nmax_retry_times = 0\n"
             "drop_limit = 268435456\ntimeout = 100\n",
             ntohs(a.sin_port), dir, sync);
    if (rlog_init(cfg, err, sizeof err) != 0) {
        fprintf(stderr, "rlog_init: %s\n", err);
        return 1;
    }
    struct rlog_stats st;
    double t0 = now();
    long waits = 0;
    fill(msg);
    for (long i = 0; i < m; i++, next(msg)) {
        while (rlog_log(msg, MSG) == 0) { /* dropped (drop_limit): wait for the worker */
            waits++;
            usleep(1000);
        }
    }
    double t_logged = now() - t0;
    do {
        usleep(200);
        rlog_stats(&st, sizeof st);
        if (now() - t0 > 600) {
            fprintf(stderr, "write: spooled %llu of %ld after 600 s\n", (unsigned long long)st.spooled, m);
            return 1;
        }
    } while (st.spooled + st.lost < (uint64_t)m);
    double t = now() - t0;
    double ts = now();
    nftw(dir, fsync_one, 16, FTW_PHYS); /* every file and directory of the spool */
    double t_sync = now() - ts;
    printf("port %d\n", ntohs(a.sin_port));
    printf("write spool_sync=%s: %ld messages of %d B in %.3f s (logged in %.3f s, %ld waits on drop_limit)"
           ": %.1f MB/s, %.0f messages/s; spooled %llu, lost %llu, dropped %llu\n",
           sync, m, MSG, t, t_logged, waits, m * (double)MSG / t / 1e6, m / t,
           (unsigned long long)st.spooled, (unsigned long long)st.lost, (unsigned long long)st.dropped);
    printf("write spool_sync=%s: + fsync of the spool's files %.3f s: %.1f MB/s\n", sync, t_sync, m * (double)MSG / (t + t_sync) / 1e6);
    io_report(t);
    fflush(stdout);
    _exit(st.spooled == (uint64_t)m ? 0 : 1); /* leave the spool as a dead process's */
}

static int listener;
static uint64_t lines_seen;

static void *sink(void *arg)
{
    (void)arg;
    static char buf[1 << 20];
    for (;;) {
        int c = accept(listener, NULL, NULL);
        if (c < 0)
            return NULL;
        ssize_t n;
        while ((n = recv(c, buf, sizeof buf, 0)) > 0) {
            uint64_t k = 0;
            for (char *p = buf, *e = buf + n; (p = memchr(p, '\n', e - p)) != NULL; p++)
                k++;
            __atomic_fetch_add(&lines_seen, k, __ATOMIC_RELAXED);
        }
        close(c);
    }
}

static int do_replay(const char *dir, long m, int port, const char *sync, int cold)
{
    if (cold) /* the spool's pages out of the page cache, as after a reboot */
        nftw(dir, evict_one, 16, FTW_PHYS);
    n_fdatasync = fdatasync_ns = 0;
    listener = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons(port)};
    socklen_t al = sizeof a;
    if (listener < 0 || bind(listener, (struct sockaddr *)&a, sizeof a) || listen(listener, 16) ||
        getsockname(listener, (struct sockaddr *)&a, &al)) {
        perror("listener");
        return 1;
    }
    pthread_t th;
    pthread_create(&th, NULL, sink, NULL);
    char cfg[1024], err[256];
    snprintf(cfg, sizeof cfg, "host = 127.0.0.1\nport = %d\nspool = %s\nspool_sync = %s\n",
             ntohs(a.sin_port), dir, sync);
    double t0 = now();
    if (rlog_init(cfg, err, sizeof err) != 0) {
        fprintf(stderr, "rlog_init: %s\n", err);
        return 1;
    }
    double t_init = now() - t0, t_first = 0;
    while (__atomic_load_n(&lines_seen, __ATOMIC_RELAXED) < (uint64_t)m) {
        if (t_first == 0 && __atomic_load_n(&lines_seen, __ATOMIC_RELAXED) > 0)
            t_first = now() - t0;
        usleep(100);
        if (now() - t0 > 300) {
            fprintf(stderr, "replay: only %llu of %ld lines after 300 s\n",
                    (unsigned long long)lines_seen, m);
            return 1;
        }
    }
    double t = now() - t0;
    struct rlog_stats st;
    rlog_stats(&st, sizeof st);
    printf("replay spool_sync=%s%s: %ld messages of %d B in %.3f s (rlog_init %.3f s, first line at %.3f s)"
           ": %.0f messages/s, %.1f MB/s; adopted %llu, sent %llu, spooled %llu\n",
           sync, cold ? " (spool not in the page cache)" : "", m, MSG, t, t_init, t_first, m / t, m * (double)MSG / t / 1e6,
           (unsigned long long)st.adopted, (unsigned long long)st.sent, (unsigned long long)st.spooled);
    io_report(t);
    fflush(stdout);
    _exit(0);
}

int main(int argc, char **argv)
{
    if (argc >= 5 && strcmp(argv[1], "write") == 0)
        return do_write(argv[2], atol(argv[3]), argv[4]);
    if (argc >= 5 && strcmp(argv[1], "replay") == 0)
        return do_replay(argv[2], atol(argv[3]), atoi(argv[4]), argc >= 6 ? argv[5] : "batch",
                         argc >= 7 && strcmp(argv[6], "cold") == 0);
    fprintf(stderr, "usage: %s write DIR M batch|interval|none\n       %s replay DIR M PORT [SYNC [cold]]\n",
            argv[0], argv[0]);
    return 2;
}
