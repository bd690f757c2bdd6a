/*
 * Instructions per rlog_log call (200-byte message), counted by callgrind: a figure that does not
 * depend on what else the machine is doing. The buffer is sized so no flush starts during the run,
 * and rlog_stats (not counted) moves the thread's ring into the logger's buffer every 1000 calls,
 * as the worker does in a running process (under valgrind the worker gets too few time slices to
 * do it in time, and the calls would count the copy a full ring costs the caller instead).
 *
 *   sh bench/log_instructions.sh
 */
#include <stdio.h>
#include <string.h>

#include "rlog.h"

int main(void)
{
    char err[256], msg[200];
    memset(msg, 'x', sizeof msg);
    if (rlog_init("host = 127.0.0.1\nport = 9\nflush_limit = 500000000\ndrop_limit = 600000000", err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    struct rlog_stats st;
    for (int i = 0; i < 1000000; i++) {
        rlog_log(msg, sizeof msg);
        if (i % 1000 == 999)
            rlog_stats(&st, sizeof st);
    }
    rlog_stats(&st, sizeof st);
    printf("logged %llu\n", (unsigned long long)st.logged);
    return 0;
}
