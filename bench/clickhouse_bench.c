/*
 * rlog into ClickHouse, next to clickhouse-client inserting the same rows (bench/clickhouse_bench.sh
 * runs both side by side and checks what the server stored).
 *
 *   clickhouse_bench rows N FILE        writes the N rows rlog's json encoder makes of the N
 *                                       messages below (ts_us fixed at 16 digits, as a real one)
 *   clickhouse_bench rlog N PORT TABLE  logs the N messages through a clickhouse:// logger into
 *                                       logs.TABLE and waits until every one is delivered;
 *                                       the messages are made before the clock starts (as
 *                                       clickhouse-client's rows are in a file), and the time
 *                                       from the first call until all are delivered is printed
 *                                       as `delivered_s S`;
 *                                       counts what rlog_logger_log returned: exits 1 if one
 *                                       was not buffered (a drop) or if any message was not sent;
 *                                       (RLOG_BENCH_COMPRESSION=gzip|none: bodies compressed
 *                                       so instead of the default LZ4 blocks; RLOG_BENCH_EXTRA:
 *                                       more config lines)
 *
 * Message i: `10.0.%d.%d GET /api/v1/items/%08d status=200 bytes=%d ua=curl/8.5.0 rt=0.%03d`.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rlog.h"

static int message(char *buf, size_t cap, long i)
{
    return snprintf(buf, cap, "10.0.%ld.%ld GET /api/v1/items/%08ld status=200 bytes=%ld ua=curl/8.5.0 rt=0.%03ld",
                    (i >> 8) & 255, i & 255, i, 100 + (i * 7919) % 90000, (i * 31) % 1000);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    char msg[256];
    if (argc == 4 && strcmp(argv[1], "rows") == 0) {
        long n = atol(argv[2]);
        FILE *f = fopen(argv[3], "w");
        if (!f)
            return perror(argv[3]), 2;
        for (long i = 0; i < n; i++) {
            message(msg, sizeof msg, i);
            fprintf(f, "{\"ts_us\":%ld,\"msg\":\"%s\"}\n", 1700000000000000L + i, msg);
        }
        return fclose(f) != 0;
    }
    if (argc != 5 || strcmp(argv[1], "rlog") != 0) {
        fprintf(stderr, "usage: %s rows N FILE | rlog N PORT TABLE\n", argv[0]);
        return 2;
    }
    long n = atol(argv[2]);
    char config[512], err[512];
    /* drop_limit: room for the whole burst, so that a fast producer is never refused while the
     * worker inserts; the rest are the clickhouse logger's defaults. */
    /* RLOG_BENCH_COMPRESSION: another body compression than the default, to see what each
     * costs. */
    const char *compression = getenv("RLOG_BENCH_COMPRESSION");
    snprintf(config, sizeof config,
             "logger = clickhouse://127.0.0.1:%s/logs.%s\n"
             "log-encoder = json {\"ts_us\":${micros},\"msg\":\"${msg}\"}\n"
             "drop_limit = 1073741824\ntimeout = 30000\n%s%s\n%s\n",
             argv[3], argv[4], compression ? "compression = " : "", compression ? compression : "",
             getenv("RLOG_BENCH_EXTRA") ? getenv("RLOG_BENCH_EXTRA") : "");
    struct rlog_logger *lg = rlog_logger_new(config, err, sizeof err);
    if (!lg)
        return fprintf(stderr, "rlog_logger_new: %s\n", err), 2;
    long buffered = 0, dropped = 0, failed = 0;
    /* The messages, made before the clock starts: what is timed is rlog's part. */
    char *text = malloc((size_t)n * 128);
    int *lens = malloc((size_t)n * sizeof *lens);
    if (!text || !lens)
        return fprintf(stderr, "out of memory\n"), 2;
    for (long i = 0; i < n; i++)
        lens[i] = message(text + i * 128, 128, i);
    double t0 = now();
    for (long i = 0; i < n; i++) {
        int len = lens[i];
        int r = rlog_logger_log(lg, text + i * 128, (size_t)len);
        if (r == len)
            buffered++;
        else if (r == 0)
            dropped++;
        else
            failed++;
    }
    double t1 = now();
    int all = rlog_logger_free(lg, 120000) == 0;
    double t2 = now();
    fprintf(stderr,
            "rlog: %ld rlog_logger_log calls in %.3f s (%.0f ns each): %ld buffered, %ld dropped, "
            "%ld failed; all delivered %.3f s after the first: %s\n",
            n, t1 - t0, (t1 - t0) / n * 1e9, buffered, dropped, failed, t2 - t0,
            all ? "yes" : "NO");
    printf("delivered_s %.3f\n", t2 - t0);
    free(text);
    free(lens);
    return (buffered == n && all) ? 0 : 1;
}
