/*
 * rlog's http:// output at full speed (issue 15; bench/http_vs_rsyslog.py runs it next to
 * rsyslog's omelasticsearch and checks what nginx counted).
 *
 *   http_bench lines N FILE         writes the N lines below to FILE (what rsyslog is fed)
 *   http_bench rlog N URL [gzip]    logs the N lines through `logger = URL` (NDJSON,
 *                                   max_batch_bytes = 1048576; with `gzip`: compression = gzip)
 *                                   and polls rlog_logger_stats until `sent` = N; prints
 *                                   `rlog: N lines in S s (L lines/s) ...` on stdout; exits 1 if
 *                                   a call did not buffer (a drop) or not all were sent.
 *                                   RLOG_BENCH_EXTRA: more config lines.
 *
 * Line i: a 199-byte JSON object + "\n" (200 bytes), fields varying with i, padded with 'x'.
 *
 * Build: cc -O2 -Iinclude -o build/http_bench bench/http_bench.c -Ltarget/release -lrlog \
 *            -Wl,-rpath,$PWD/target/release
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rlog.h"

#define LINE 200

/* Line i into buf (LINE bytes, the last one '\n'). */
static void line(char *buf, long i)
{
    int n = snprintf(buf, LINE + 1,
                     "{\"ts\":\"2026-12-07T10:%02ld:%02ld.%06ldZ\",\"host\":\"web-%02ld\",\"level\":\"info\","
                     "\"method\":\"GET\",\"path\":\"/api/v1/items/%08ld\",\"status\":200,\"bytes\":%ld,"
                     "\"rt\":0.%03ld,\"pad\":\"",
                     (i / 60000000) % 60, (i / 1000000) % 60, i % 1000000, i % 32, i,
                     100 + (i * 7919) % 90000, (i * 31) % 1000);
    memset(buf + n, 'x', LINE - 3 - n);
    memcpy(buf + LINE - 3, "\"}\n", 3);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    char buf[LINE + 1];
    if (argc == 4 && strcmp(argv[1], "lines") == 0) {
        long n = atol(argv[2]);
        FILE *f = fopen(argv[3], "w");
        if (!f)
            return perror(argv[3]), 2;
        for (long i = 0; i < n; i++) {
            line(buf, i);
            fwrite(buf, 1, LINE, f);
        }
        return fclose(f) != 0;
    }
    if ((argc != 4 && argc != 5) || strcmp(argv[1], "rlog") != 0) {
        fprintf(stderr, "usage: %s lines N FILE | rlog N URL [gzip]\n", argv[0]);
        return 2;
    }
    long n = atol(argv[2]);
    int gzip = argc == 5 && strcmp(argv[4], "gzip") == 0;
    char config[1024], err[512];
    /* drop_limit: room for the whole burst (the producer outruns any HTTP endpoint);
     * max_batch_size: high enough that max_batch_bytes is the bound, with gzip too. */
    snprintf(config, sizeof config,
             "logger = %s\nmax_batch_bytes = 1048576\nmax_batch_size = 1000000\n"
             "drop_limit = 2147483647\ntimeout = 30000\n%s%s\n",
             argv[3], gzip ? "compression = gzip\n" : "",
             getenv("RLOG_BENCH_EXTRA") ? getenv("RLOG_BENCH_EXTRA") : "");
    struct rlog_logger *lg = rlog_logger_new(config, err, sizeof err);
    if (!lg)
        return fprintf(stderr, "rlog_logger_new: %s\n", err), 2;
    /* The lines made before the clock starts: what is timed is rlog, not snprintf. */
    char *all = malloc((size_t)n * LINE + 1);
    if (!all)
        return perror("malloc"), 2;
    for (long i = 0; i < n; i++)
        line(all + (size_t)i * LINE, i);
    long buffered = 0;
    double t0 = now();
    for (long i = 0; i < n; i++) {
        if (rlog_logger_log(lg, all + (size_t)i * LINE, LINE) == LINE)
            buffered++;
    }
    double t1 = now();
    struct rlog_stats st;
    for (;;) {
        rlog_logger_stats(lg, &st, sizeof st);
        if (st.sent + st.lost + st.dropped >= (unsigned long)n || now() - t0 > 300)
            break;
        struct timespec ms = {0, 200000};
        nanosleep(&ms, NULL);
    }
    double t2 = now();
    printf("rlog%s: %ld lines in %.3f s (%.0f lines/s; log calls %.3f s): %ld buffered, sent %lu, "
           "lost %lu, dropped %lu\n",
           gzip ? " gzip" : "", n, t2 - t0, n / (t2 - t0), t1 - t0, buffered,
           (unsigned long)st.sent, (unsigned long)st.lost, (unsigned long)st.dropped);
    fflush(stdout);
    int ok = rlog_logger_free(lg, 10000) == 0;
    return (buffered == n && st.sent == (unsigned long)n && ok) ? 0 : 1;
}
