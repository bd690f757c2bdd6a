/*
 * rlog from C: initialise the process-wide logger, log a few lines, flush, print the counters.
 *
 * Build it from the repository root, after `make build` (cargo build --release, plus the
 * target/release/librlog.so.0 link the loader looks for):
 *
 *   cc -std=c99 -Iinclude bindings/c/example.c -Ltarget/release -lrlog -Wl,-rpath,"$PWD/target/release" -o example
 *
 * or against an installed librlog (make install; see README.md if the loader cannot find it):
 *
 *   cc -std=c99 bindings/c/example.c $(pkg-config --cflags --libs rlog) -o example
 *
 * and run it:
 *
 *   ./example 'host = 127.0.0.1\nport = 5140' 10
 *
 * The first argument is rlog config text ("\n" in it is turned into a newline, so a whole
 * config fits on a command line); the second is how many lines to log (default 5).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rlog.h"

/* Turns the two characters "\n" into a newline, in place. */
static void unescape_newlines(char *s)
{
    char *w = s;
    for (const char *r = s; *r; r++) {
        if (r[0] == '\\' && r[1] == 'n') {
            *w++ = '\n';
            r++;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s CONFIG [COUNT]\n", argv[0]);
        return 2;
    }
    char *config = argv[1];
    unescape_newlines(config);
    int count = argc > 2 ? atoi(argv[2]) : 5;

    char err[256];
    if (rlog_init(config, err, sizeof err) != 0) {
        fprintf(stderr, "rlog_init: %s\n", err);
        return 1;
    }

    char line[128];
    for (int i = 1; i <= count; i++) {
        int n = snprintf(line, sizeof line, "hello from C (librlog %s), line %d of %d\n",
                         rlog_version(), i, count);
        if (rlog_log(line, (size_t)n) != n) {
            rlog_last_error(err, sizeof err);
            fprintf(stderr, "rlog_log: line %d not buffered: %s\n", i, err);
        }
    }

    int64_t sent = rlog_flush();
    if (sent < 0) {
        rlog_last_error(err, sizeof err);
        fprintf(stderr, "rlog_flush: %s\n", err);
    }

    struct rlog_stats st;
    rlog_stats(&st, sizeof st);
    printf("C example: logged %llu, sent %llu (%llu bytes), lost %llu, buffered %llu\n",
           (unsigned long long)st.logged, (unsigned long long)st.sent,
           (unsigned long long)st.sent_bytes, (unsigned long long)st.lost,
           (unsigned long long)st.buffered);
    return rlog_shutdown(-1) == 0 ? 0 : 1;
}
