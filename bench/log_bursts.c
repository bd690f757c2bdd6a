/*
 * rlog_log in bursts, as benches/log_call.rs times it (1000 calls of 200 bytes, what a thread's
 * ring holds, then an untimed wait until the worker has drained them to a loopback collector),
 * with what the calling thread did meanwhile: context switches taken *inside* the timed bursts
 * (getrusage RUSAGE_THREAD: voluntary = the thread blocked, involuntary = it was preempted).
 * A voluntary switch inside rlog_log means it waited for something; their count does not depend
 * on how busy the machine is, the times do. Also prints the CPU time rlog's worker thread used per
 * message (its schedstat), which the other threads pay for when it runs on their core.
 *
 *   make build && cc -O2 -Iinclude -o build/log_bursts bench/log_bursts.c -Ltarget/release -lrlog \
 *       -Wl,-rpath,$PWD/target/release -lpthread && build/log_bursts [BURSTS]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <dirent.h>
#include <unistd.h>

#include "rlog.h"

#define BURST 1000

static int listener;

static void *sink(void *arg)
{
    (void)arg;
    static char buf[1 << 20];
    for (;;) {
        int c = accept(listener, NULL, NULL);
        if (c < 0)
            return NULL;
        while (recv(c, buf, sizeof buf, 0) > 0)
            ;
        close(c);
    }
}

/* CPU time (ns) of this process's threads named rlog-worker, from /proc/self/task/TID/schedstat. */
static unsigned long long worker_cpu_ns(void)
{
    unsigned long long total = 0;
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        char path[300], comm[64] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        int named = fgets(comm, sizeof comm, f) && strncmp(comm, "rlog-worker", 11) == 0;
        fclose(f);
        snprintf(path, sizeof path, "/proc/self/task/%s/schedstat", e->d_name);
        unsigned long long ns = 0;
        if (named && (f = fopen(path, "r")) != NULL) {
            if (fscanf(f, "%llu", &ns) == 1)
                total += ns;
            fclose(f);
        }
    }
    if (d)
        closedir(d);
    return total;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int bursts = argc > 1 ? atoi(argv[1]) : 2000;
    listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (bind(listener, (struct sockaddr *)&a, sizeof a) || listen(listener, 16) ||
        getsockname(listener, (struct sockaddr *)&a, &al))
        return perror("listener"), 1;
    pthread_t th;
    pthread_create(&th, NULL, sink, NULL);
    char cfg[256], err[256], msg[200];
    memset(msg, 'x', sizeof msg);
    snprintf(cfg, sizeof cfg, "host = 127.0.0.1\nport = %d\ndrop_limit = 67108864\nflush_limit = 65536\n",
             ntohs(a.sin_port));
    if (rlog_init(cfg, err, sizeof err) != 0)
        return fprintf(stderr, "%s\n", err), 1;
    double *ns = malloc(bursts * sizeof *ns);
    long vol = 0, invol = 0, bursts_with_vol = 0;
    struct rlog_stats st;
    for (int b = 0; b < bursts; b++) {
        struct rusage r0, r1;
        getrusage(RUSAGE_THREAD, &r0);
        double t = now();
        for (int i = 0; i < BURST; i++)
            rlog_log(msg, sizeof msg);
        ns[b] = (now() - t) * 1e9 / BURST;
        getrusage(RUSAGE_THREAD, &r1);
        vol += r1.ru_nvcsw - r0.ru_nvcsw;
        invol += r1.ru_nivcsw - r0.ru_nivcsw;
        bursts_with_vol += r1.ru_nvcsw != r0.ru_nvcsw;
        rlog_flush();
        do {
            rlog_stats(&st, sizeof st);
            if (st.buffered)
                usleep(200);
        } while (st.buffered);
    }
    double worker = (double)worker_cpu_ns() / ((double)bursts * BURST);
    qsort(ns, bursts, sizeof *ns, cmp);
    printf("%d bursts of %d: ns per call p10 %.1f, median %.1f, p90 %.1f, p99 %.1f; inside the bursts: "
           "%ld voluntary switches (in %ld bursts), %ld involuntary; sent %llu dropped %llu; "
           "rlog-worker CPU %.1f ns per message\n",
           bursts, BURST, ns[bursts / 10], ns[bursts / 2], ns[bursts * 9 / 10], ns[bursts * 99 / 100],
           vol, bursts_with_vol, invol, (unsigned long long)st.sent, (unsigned long long)st.dropped, worker);
    return 0;
}
