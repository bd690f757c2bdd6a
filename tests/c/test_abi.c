/*
 * The C ABI, exercised from C exactly as include/rlog.h declares it (built with -Wall -Werror):
 * every function, NULL and oversized arguments, the default logger and handles, SIGPIPE, fork
 * and the flush at exit. A collector runs in this process on 127.0.0.1 (threads), so each check
 * compares what arrived with what was logged.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rlog.h"

static int passed, failed;

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        if (cond) {                                                           \
            passed++;                                                         \
        } else {                                                              \
            failed++;                                                         \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);   \
            fprintf(stderr, __VA_ARGS__);                                     \
            fputc('\n', stderr);                                              \
        }                                                                     \
    } while (0)

/* ---- a loopback collector: accepts connections, appends everything to one buffer ---- */

struct collector {
    int listen_fd;
    int port;
    int close_at_once; /* accept and close every connection */
    pthread_mutex_t mu;
    char *data;
    size_t len, cap;
    int conns;
};

struct conn_arg {
    struct collector *c;
    int fd;
};

static void *conn_thread(void *p)
{
    struct conn_arg *a = p;
    char buf[65536];
    ssize_t n;
    while ((n = read(a->fd, buf, sizeof buf)) > 0) {
        pthread_mutex_lock(&a->c->mu);
        if (a->c->len + (size_t)n > a->c->cap) {
            a->c->cap = (a->c->len + (size_t)n) * 2;
            a->c->data = realloc(a->c->data, a->c->cap);
        }
        memcpy(a->c->data + a->c->len, buf, (size_t)n);
        a->c->len += (size_t)n;
        pthread_mutex_unlock(&a->c->mu);
    }
    close(a->fd);
    free(a);
    return NULL;
}

static void *accept_thread(void *p)
{
    struct collector *c = p;
    for (;;) {
        int fd = accept(c->listen_fd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            return NULL;
        }
        pthread_mutex_lock(&c->mu);
        c->conns++;
        pthread_mutex_unlock(&c->mu);
        if (c->close_at_once) {
            close(fd);
            continue;
        }
        struct conn_arg *a = malloc(sizeof *a);
        a->c = c;
        a->fd = fd;
        pthread_t t;
        pthread_create(&t, NULL, conn_thread, a);
        pthread_detach(t);
    }
}

static struct collector *collector_start(int close_at_once)
{
    struct collector *c = calloc(1, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    c->close_at_once = close_at_once;
    c->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(c->listen_fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(c->listen_fd, 64) != 0) {
        perror("collector");
        exit(2);
    }
    socklen_t sl = sizeof sa;
    getsockname(c->listen_fd, (struct sockaddr *)&sa, &sl);
    c->port = ntohs(sa.sin_port);
    pthread_t t;
    pthread_create(&t, NULL, accept_thread, c);
    pthread_detach(t);
    return c;
}

static size_t collector_len(struct collector *c)
{
    pthread_mutex_lock(&c->mu);
    size_t n = c->len;
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* Waits up to 10 s for at least n bytes. */
static size_t collector_wait(struct collector *c, size_t n)
{
    for (int i = 0; i < 2000 && collector_len(c) < n; i++)
        usleep(5000);
    return collector_len(c);
}

static size_t count_substr(struct collector *c, const char *needle)
{
    size_t count = 0, nl = strlen(needle);
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i + nl <= c->len; i++)
        if (memcmp(c->data + i, needle, nl) == 0)
            count++;
    pthread_mutex_unlock(&c->mu);
    return count;
}

static void config_for(char *out, size_t n, int port, const char *extra)
{
    snprintf(out, n, "host = 127.0.0.1\nport = %d\n%s", port, extra);
}

static int identity_holds(const struct rlog_stats *s)
{
    return s->logged == s->sent + s->lost + s->spooled + s->buffered &&
           s->logged_bytes == s->sent_bytes + s->lost_bytes + s->spooled_bytes + s->buffered_bytes;
}

/* ---- the checks ---- */

static void test_before_init_and_null_arguments(void)
{
    char err[128];
    struct rlog_stats st;
    CHECK(rlog_initted() == 0, "initted before init");
    CHECK(rlog_log("x", 1) == -1, "log before init");
    CHECK(rlog_log_pending("x", 1) == -1, "log_pending before init");
    CHECK(rlog_flush() == -1, "flush before init");
    CHECK(rlog_stats(&st, sizeof st) == -1, "stats before init");
    CHECK(rlog_last_error(err, sizeof err) == 0, "no error before init");
    CHECK(rlog_shutdown(0) == -1, "shutdown before init");
    CHECK(rlog_version() != NULL && strchr(rlog_version(), '.') != NULL, "version");

    CHECK(rlog_init(NULL, err, sizeof err) == -1, "NULL config");
    CHECK(strcmp(err, "config is NULL") == 0, "got %s", err);
    CHECK(rlog_init(NULL, NULL, 0) == -1, "NULL config, NULL err");
    CHECK(rlog_init("host = 127.0.0.1\nport = 99999", err, sizeof err) == -1, "bad port");
    CHECK(strncmp(err, "\"port\" out of range 0~65535", 27) == 0, "got %s", err);
    CHECK(rlog_init("flush_limit = 1", err, sizeof err) == -1, "no server");
    CHECK(strcmp(err, "no logging server configured. \"host\"/\"port\" or \"path\" is required.") == 0, "got %s", err);
    char tiny[8];
    memset(tiny, 'z', sizeof tiny);
    CHECK(rlog_init("nonsense", tiny, sizeof tiny) == -1, "bad line");
    CHECK(tiny[7] == '\0' && strlen(tiny) == 7, "err truncated and NUL-terminated: %.8s", tiny);
    CHECK(rlog_initted() == 0, "a failed init leaves the process uninitialised");

    CHECK(rlog_logger_new(NULL, err, sizeof err) == NULL, "handle: NULL config");
    CHECK(rlog_logger_new("host = 127.0.0.1\nport = 1\nsock_type = sctp", err, sizeof err) == NULL, "handle: bad sock_type");
    CHECK(strncmp(err, "\"sock_type\" must be \"tcp\" or \"udp\"", 34) == 0, "got %s", err);
    CHECK(rlog_logger_log(NULL, "x", 1) == -1, "NULL handle log");
    CHECK(rlog_logger_flush(NULL) == -1, "NULL handle flush");
    CHECK(rlog_logger_stats(NULL, &st, sizeof st) == -1, "NULL handle stats");
    CHECK(rlog_logger_last_error(NULL, err, sizeof err) == 0, "NULL handle error");
    CHECK(rlog_logger_free(NULL, 0) == -1, "NULL handle free");
}

static void test_default_logger(struct collector *c)
{
    char cfg[256], err[256];
    config_for(cfg, sizeof cfg, c->port, "flush_limit = 4\ndrop_limit = 6");
    CHECK(rlog_init(cfg, err, sizeof err) == 0, "init: %s", err);
    CHECK(rlog_initted() == 1, "initted");
    size_t base = collector_len(c);
    CHECK(rlog_log("000", 3) == 3, "000");
    CHECK(rlog_log("aaaaa", 5) == 0, "aaaaa dropped");
    size_t need = rlog_last_error(NULL, 0);
    CHECK(need == strlen("logger buffer is full, this log message will be dropped"), "peek length %zu", need);
    CHECK(rlog_last_error(err, sizeof err) == need, "error length");
    CHECK(strcmp(err, "logger buffer is full, this log message will be dropped") == 0, "got %s", err);
    CHECK(rlog_last_error(err, sizeof err) == 0 && err[0] == '\0', "returned once");
    CHECK(rlog_log("bbb", 3) == 3, "bbb");
    /* rlog_log_pending: rlog_log's answer, and -2 - it while an error is pending. */
    CHECK(rlog_log_pending("ccccccc", 7) == -2, "dropped, error pending: -2 - 0");
    CHECK(rlog_last_error(err, sizeof err) > 0 && strstr(err, "buffer is full") != NULL, "its error: %s", err);
    CHECK(rlog_log_pending(NULL, 3) == -1, "log_pending: NULL message");
    CHECK(rlog_last_error(err, sizeof err) > 0 && strstr(err, "NULL") != NULL, "NULL message error: %s", err);
    CHECK(rlog_log_pending("x", (size_t)INT_MAX - 1) == -1, "log_pending: oversized length");
    CHECK(rlog_last_error(err, sizeof err) > 0 && strstr(err, "INT_MAX") != NULL, "oversized error: %s", err);
    /* resty's timer flush still counts "000" when "bbb" comes, so "bbb" starts a flush there;
       rlog's worker may already have sent "000", leaving "bbb" below flush_limit: flush it. */
    CHECK(rlog_flush() >= 0, "flush");
    CHECK(collector_wait(c, base + 6) == base + 6, "000bbb arrived");
    pthread_mutex_lock(&c->mu);
    CHECK(memcmp(c->data + base, "000bbb", 6) == 0, "exactly 000bbb");
    pthread_mutex_unlock(&c->mu);
    CHECK(rlog_log(NULL, 3) == -1, "NULL message");
    CHECK(rlog_last_error(err, sizeof err) > 0 && strstr(err, "NULL") != NULL, "NULL message error: %s", err);
    CHECK(rlog_log("x", (size_t)INT_MAX + 1) == -1, "oversized length");
    CHECK(rlog_last_error(err, sizeof err) > 0 && strstr(err, "INT_MAX") != NULL, "oversized error: %s", err);

    /* Re-init reconfigures; what the old logger held is still delivered. The same config again
       keeps the logger. */
    config_for(cfg, sizeof cfg, c->port, "flush_limit = 100000\ndrop_limit = 200000");
    CHECK(rlog_init(cfg, err, sizeof err) == 0, "re-init: %s", err);
    CHECK(rlog_log("abc", 3) == 3 && rlog_log_pending("efg", 3) == 3, "buffered, nothing pending");
    CHECK(rlog_flush() == 6, "flush returns bytes");
    CHECK(rlog_flush() == 0, "nothing to flush");
    const char bin[] = {'\0', '\xff', '\n'};
    CHECK(rlog_log(bin, sizeof bin) == 3, "binary message");
    struct rlog_stats st;
    memset(&st, 0xAB, sizeof st);
    CHECK(rlog_stats(&st, sizeof st) == 0, "stats");
    /* The retired logger's counts stay in the default's stats: 000 and bbb, then abc, efg, bin. */
    CHECK(st.logged == 5 && st.logged_bytes == 15 && st.sent == 4 && st.buffered == 1, "counts %llu %llu %llu",
          (unsigned long long)st.logged, (unsigned long long)st.sent, (unsigned long long)st.buffered);
    CHECK(identity_holds(&st), "identity");
    /* A caller built against an older, shorter struct gets only what it asked for. */
    uint64_t two[3] = {0, 0, 0xDEAD};
    CHECK(rlog_stats((struct rlog_stats *)(void *)two, 2 * sizeof(uint64_t)) == 0, "short stats");
    CHECK(two[0] == 5 && two[1] == 15 && two[2] == 0xDEAD, "short stats copy");
    CHECK(rlog_stats(NULL, sizeof st) == -1, "NULL stats");
    CHECK(rlog_shutdown(1000) == 0, "shutdown delivers everything");
    CHECK(rlog_initted() == 0, "not initted after shutdown");
    CHECK(rlog_log("late", 4) == -1, "log after shutdown");
    CHECK(collector_wait(c, base + 15) == base + 15, "abcefg + binary arrived");
}

static void test_handles(struct collector *c)
{
    char cfg[256], err[256];
    config_for(cfg, sizeof cfg, c->port, "flush_limit = 1000");
    size_t base = collector_len(c);
    rlog_logger *a = rlog_logger_new(cfg, err, sizeof err);
    rlog_logger *b = rlog_logger_new(cfg, err, sizeof err);
    CHECK(a != NULL && b != NULL, "two handles: %s", err);
    for (int i = 0; i < 100; i++) {
        CHECK(rlog_logger_log(a, "handle-a\n", 9) == 9, "a");
        CHECK(rlog_logger_log(b, "handle-b\n", 9) == 9, "b");
    }
    CHECK(rlog_logger_log(a, NULL, 1) == -1, "NULL msg on a handle");
    CHECK(rlog_logger_last_error(a, err, sizeof err) > 0, "its error");
    CHECK(rlog_logger_flush(a) >= 0, "flush a");
    struct rlog_stats sa, sb;
    CHECK(rlog_logger_stats(a, &sa, sizeof sa) == 0 && rlog_logger_stats(b, &sb, sizeof sb) == 0, "stats");
    CHECK(sa.logged == 100 && sb.logged == 100, "independent counters");
    CHECK(identity_holds(&sa) && identity_holds(&sb), "identity");
    CHECK(rlog_logger_free(a, 1000) == 0 && rlog_logger_free(b, -1) == 0, "free delivers");
    collector_wait(c, base + 1800);
    CHECK(count_substr(c, "handle-a\n") == 100 && count_substr(c, "handle-b\n") == 100, "all handle lines arrived");
}

static void test_no_sigpipe(void)
{
    struct collector *closer = collector_start(1);
    char cfg[256], err[256];
    config_for(cfg, sizeof cfg, closer->port, "max_retry_times = 1\nretry_interval = 1\ntimeout = 200");
    rlog_logger *lg = rlog_logger_new(cfg, err, sizeof err);
    CHECK(lg != NULL, "%s", err);
    /* SIGPIPE keeps its default action (terminate): surviving this loop is the check. */
    signal(SIGPIPE, SIG_DFL);
    char big[65536];
    memset(big, 'p', sizeof big);
    for (int i = 0; i < 30; i++) {
        rlog_logger_log(lg, big, sizeof big);
        rlog_logger_flush(lg);
        usleep(2000);
    }
    struct rlog_stats st;
    rlog_logger_stats(lg, &st, sizeof st);
    CHECK(identity_holds(&st), "identity after a closing collector");
    CHECK(st.connects >= 2, "reconnected, %llu connects", (unsigned long long)st.connects);
    rlog_logger_free(lg, 0);
    CHECK(1, "still alive: no SIGPIPE");
}

static void test_fork(struct collector *c)
{
    char cfg[256], err[256];
    config_for(cfg, sizeof cfg, c->port, "flush_limit = 100000\ndrop_limit = 200000");
    CHECK(rlog_init(cfg, err, sizeof err) == 0, "init: %s", err);
    size_t base = collector_len(c);
    for (int i = 0; i < 100; i++)
        rlog_log("parent-before-fork\n", 19);
    pid_t pid = fork();
    if (pid == 0) {
        /* Child: a working logger of its own, zeroed counters, none of the parent's lines. */
        struct rlog_stats st;
        rlog_stats(&st, sizeof st);
        int ok = st.logged == 0 && st.buffered == 0;
        for (int i = 0; i < 50; i++)
            ok &= rlog_log("child-line\n", 11) == 11;
        ok &= rlog_flush() == 550;
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child logged and flushed on its own");
    CHECK(rlog_flush() == 1900, "parent still sends its own lines");
    collector_wait(c, base + 1900 + 550);
    CHECK(count_substr(c, "parent-before-fork\n") == 100, "parent lines exactly once: %zu",
          count_substr(c, "parent-before-fork\n"));
    CHECK(count_substr(c, "child-line\n") == 50, "child lines");
    CHECK(rlog_shutdown(1000) == 0, "shutdown");
}

/*
 * fork() after a re-init, while the retired logger is still trying to deliver (its collector is
 * down): the child owns none of it. Its stats start at zero (no retired counters of the
 * parent's), and its shutdown does not wait for, nor answer for, what the parent delivers.
 */
static void test_fork_after_reinit(struct collector *c)
{
    char cfg[256], err[256];
    /* A port bound and never listening: connections to it are refused. */
    int held = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    CHECK(bind(held, (struct sockaddr *)&sa, sizeof sa) == 0 &&
          getsockname(held, (struct sockaddr *)&sa, &len) == 0, "bind a refusing port");
    config_for(cfg, sizeof cfg, ntohs(sa.sin_port), "flush_limit = 100000\ntimeout = 3000\nretry_interval = 200");
    CHECK(rlog_init(cfg, err, sizeof err) == 0, "init: %s", err);
    for (int i = 0; i < 5; i++)
        rlog_log("to-the-down-collector\n", 22);
    config_for(cfg, sizeof cfg, c->port, "flush_limit = 100000\ndrop_limit = 200000");
    CHECK(rlog_init(cfg, err, sizeof err) == 0, "re-init: %s", err);
    pid_t pid = fork();
    if (pid == 0) {
        struct rlog_stats st;
        rlog_stats(&st, sizeof st);
        int ok = st.logged == 0 && st.buffered == 0;
        ok &= rlog_log("child-after-reinit\n", 19) == 19;
        /* 0: everything the child's loggers accepted was delivered (the retired one is the
           parent's). It used to wait out the retired logger's timeout and answer 1. */
        ok &= rlog_shutdown(3000) == 0;
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child: zeroed stats, its own shutdown");
    /* The parent's retired logger gives up on its 5 (collector down) and says so. */
    CHECK(rlog_shutdown(5000) == 1, "parent: the retired logger lost its 5");
    close(held);
}

/*
 * fork() while other threads are appending to their rings: the child (only the forking thread
 * exists there) gets a fresh logger with none of the parent's lines; the parent's threads go on,
 * and every line they logged arrives exactly once.
 */
static volatile int fork_stop;

static void *fork_logger_thread(void *arg)
{
    long *n = arg;
    while (!fork_stop) {
        if (rlog_log("busy-thread\n", 12) == 12)
            (*n)++;
    }
    return NULL;
}

static void test_fork_while_threads_log(struct collector *c)
{
    char cfg[256], err[256];
    config_for(cfg, sizeof cfg, c->port, "flush_limit = 4096\ndrop_limit = 64000000");
    CHECK(rlog_init(cfg, err, sizeof err) == 0, "init: %s", err);
    size_t base = collector_len(c);
    size_t busy_before = count_substr(c, "busy-thread\n");
    pthread_t th[3];
    long counts[3] = {0, 0, 0};
    fork_stop = 0;
    for (int i = 0; i < 3; i++)
        pthread_create(&th[i], NULL, fork_logger_thread, &counts[i]);
    usleep(20000);
    /* The child sends only once the parent's lines have all arrived (the collector appends
     * every connection's reads to one buffer: interleaved, a line could be split). */
    int go[2];
    CHECK(pipe(go) == 0, "pipe");
    pid_t pid = fork();
    if (pid == 0) {
        close(go[1]);
        struct rlog_stats st;
        rlog_stats(&st, sizeof st);
        int ok = st.logged == 0 && st.buffered == 0;
        for (int i = 0; i < 40; i++)
            ok &= rlog_log("forked-child\n", 13) == 13;
        char b;
        ok &= read(go[0], &b, 1) == 1;
        ok &= rlog_flush() == 40 * 13;
        rlog_stats(&st, sizeof st);
        ok &= st.logged == 40 && st.sent == 40;
        _exit(ok ? 0 : 1);
    }
    close(go[0]);
    usleep(20000);
    fork_stop = 1;
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    long total = counts[0] + counts[1] + counts[2];
    CHECK(rlog_flush() >= 0, "parent flush");
    struct rlog_stats st;
    rlog_stats(&st, sizeof st);
    CHECK(st.logged == (unsigned long long)total && st.buffered == 0 && identity_holds(&st),
          "parent: logged %llu of %ld, buffered %llu", (unsigned long long)st.logged, total,
          (unsigned long long)st.buffered);
    collector_wait(c, base + (size_t)total * 12);
    CHECK(write(go[1], "g", 1) == 1, "signal the child");
    close(go[1]);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child of a process with logging threads");
    collector_wait(c, base + (size_t)total * 12 + 40 * 13);
    CHECK(count_substr(c, "busy-thread\n") - busy_before == (size_t)total,
          "every busy-thread line once: %zu of %ld", count_substr(c, "busy-thread\n") - busy_before,
          total);
    CHECK(count_substr(c, "forked-child\n") == 40, "child lines: %zu", count_substr(c, "forked-child\n"));
    CHECK(rlog_shutdown(1000) == 0, "shutdown");
}

/*
 * nginx's shape: the logger is initialised in a parent whose worker thread is idle (parked on its
 * condition variable), then children are forked that log and simply exit. Each child must wake its
 * own worker (not a ghost of the parent's) and deliver at exit; nothing may be sent twice.
 */
static void test_fork_children_exit(struct collector *c)
{
    char cfg[256], err[256];
    config_for(cfg, sizeof cfg, c->port, "flush_limit = 100000\ndrop_limit = 200000\ntimeout = 2000");
    CHECK(rlog_init(cfg, err, sizeof err) == 0, "init: %s", err);
    size_t held_before = count_substr(c, "parent-held\n");
    size_t kid_before = count_substr(c, "kid-0-line\n");
    rlog_log("parent-held\n", 12);
    usleep(50000); /* let the parent's worker park */
    size_t base = collector_len(c);
    pid_t kids[3];
    for (int k = 0; k < 3; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            char line[64];
            for (int i = 0; i < 40; i++) {
                int n = snprintf(line, sizeof line, "kid-%d-line\n", k);
                rlog_log(line, (size_t)n);
            }
            if (k == 0)
                rlog_flush(); /* wakes the child's worker through the inherited condvar */
            exit(0);           /* the others deliver from the exit handler */
        }
    }
    for (int k = 0; k < 3; k++) {
        int status = 0;
        waitpid(kids[k], &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d exited normally", k);
    }
    collector_wait(c, base + 3 * 40 * 11);
    CHECK(count_substr(c, "kid-0-line\n") == kid_before + 40 &&
              count_substr(c, "kid-1-line\n") == kid_before + 40 &&
              count_substr(c, "kid-2-line\n") == kid_before + 40,
          "every child's lines exactly once: %zu %zu %zu", count_substr(c, "kid-0-line\n"),
          count_substr(c, "kid-1-line\n"), count_substr(c, "kid-2-line\n"));
    CHECK(count_substr(c, "parent-held\n") == held_before, "no child re-sent the parent's buffer");
    CHECK(rlog_shutdown(1000) == 0, "parent shutdown");
    collector_wait(c, base + 3 * 40 * 11 + 12);
    CHECK(count_substr(c, "parent-held\n") == held_before + 1, "the parent sent its own line once");
}

/*
 * rlog_init with a new config, 20 times 2 ms apart, while 4 threads log: a log call that meets a
 * logger being retired goes to its successor (even when the default changed twice during the
 * call), so no call answers -1 while the process is initialised, and every accepted line
 * arrives exactly once, the retired loggers delivering what they held.
 */
#define SWAP_THREADS 4
#define SWAP_MAX 200000
static volatile int swap_stop;
static long swap_ok[SWAP_THREADS], swap_refused[SWAP_THREADS];

static void *swap_logger_thread(void *arg)
{
    long i = (long)arg;
    char line[32];
    int n = snprintf(line, sizeof line, "swap-%ld\n", i);
    while (!swap_stop && swap_ok[i] < SWAP_MAX) {
        int r = rlog_log(line, (size_t)n);
        if (r == n)
            swap_ok[i]++;
        else if (r < 0)
            swap_refused[i]++;
    }
    return NULL;
}

static void test_reinit_while_threads_log(struct collector *c)
{
    char cfg[256], err[256], extra[128];
    size_t base = collector_len(c);
    config_for(cfg, sizeof cfg, c->port, "drop_limit = 67108864\ntimeout = 3000");
    CHECK(rlog_init(cfg, err, sizeof err) == 0, "init: %s", err);
    pthread_t t[SWAP_THREADS];
    for (long i = 0; i < SWAP_THREADS; i++)
        pthread_create(&t[i], NULL, swap_logger_thread, (void *)i);
    usleep(10000);
    int inits = 0;
    for (int k = 0; k < 20; k++) {
        /* A different text each time (a comment line), so each init really replaces the logger. */
        snprintf(extra, sizeof extra, "drop_limit = 67108864\ntimeout = 3000\n# config %d", k);
        config_for(cfg, sizeof cfg, c->port, extra);
        inits += rlog_init(cfg, err, sizeof err) == 0;
        usleep(2000);
    }
    swap_stop = 1;
    for (int i = 0; i < SWAP_THREADS; i++)
        pthread_join(t[i], NULL);
    CHECK(inits == 20, "20 re-inits");
    long refused = 0, ok = 0;
    for (int i = 0; i < SWAP_THREADS; i++) {
        refused += swap_refused[i];
        ok += swap_ok[i];
    }
    CHECK(refused == 0, "no rlog_log answered -1 while initialised: %ld did", refused);
    struct rlog_stats st;
    CHECK(rlog_stats(&st, sizeof st) == 0 && st.logged == (uint64_t)ok,
          "the default's stats count every accepted line, retired loggers' included: %llu of %ld",
          (unsigned long long)st.logged, ok);
    CHECK(rlog_shutdown(5000) == 0, "the last logger and every retired one delivered");
    /* Lines of several connections interleave in the collector's one buffer, so count bytes:
       every accepted line ("swap-N\n", 7 bytes) arrived, and nothing twice. */
    size_t want = base + (size_t)ok * 7;
    CHECK(collector_wait(c, want) == want, "%zu bytes arrived, %zu expected", collector_len(c) - base,
          (size_t)ok * 7);
}

static void test_flush_at_exit(struct collector *c)
{
    size_t base = collector_len(c);
    pid_t pid = fork();
    if (pid == 0) {
        char cfg[256], err[256];
        config_for(cfg, sizeof cfg, c->port, "flush_limit = 1000000\ndrop_limit = 2000000");
        if (rlog_init(cfg, err, sizeof err) != 0)
            _exit(3);
        for (int i = 0; i < 1000; i++)
            rlog_log("flushed-at-exit\n", 16);
        exit(0); /* no flush, no shutdown: the atexit handler delivers */
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child exited normally");
    collector_wait(c, base + 16000);
    CHECK(count_substr(c, "flushed-at-exit\n") == 1000, "all 1000 lines delivered at exit: %zu",
          count_substr(c, "flushed-at-exit\n"));
}

static void *hammer(void *p)
{
    rlog_logger *lg = p;
    for (int i = 0; i < 20000; i++)
        rlog_logger_log(lg, "threaded\n", 9);
    return NULL;
}

static void test_threads(struct collector *c)
{
    char cfg[256], err[256];
    config_for(cfg, sizeof cfg, c->port, "drop_limit = 16777216");
    rlog_logger *lg = rlog_logger_new(cfg, err, sizeof err);
    size_t base = count_substr(c, "threaded\n");
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, hammer, lg);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    struct rlog_stats st;
    rlog_logger_flush(lg);
    rlog_logger_stats(lg, &st, sizeof st);
    CHECK(st.logged == 80000 && st.dropped == 0, "logged %llu", (unsigned long long)st.logged);
    CHECK(rlog_logger_free(lg, 2000) == 0, "all delivered");
    collector_wait(c, collector_len(c) + 1);
    for (int i = 0; i < 200 && count_substr(c, "threaded\n") < base + 80000; i++)
        usleep(10000);
    CHECK(count_substr(c, "threaded\n") == base + 80000, "80000 lines arrived");
}

int main(void)
{
    struct collector *c = collector_start(0);
    test_before_init_and_null_arguments();
    test_default_logger(c);
    test_handles(c);
    test_no_sigpipe();
    test_fork(c);
    test_fork_after_reinit(c);
    test_fork_while_threads_log(c);
    for (int round = 0; round < 5; round++)
        test_fork_children_exit(c);
    test_reinit_while_threads_log(c);
    test_flush_at_exit(c);
    test_threads(c);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
