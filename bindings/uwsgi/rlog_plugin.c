/*
 * rlog_plugin: a uWSGI logger named "rlog" that ships uWSGI's logs through librlog.
 *
 *   --logger rlog:host=127.0.0.1,port=5140,flush_limit=0
 *   --req-logger rlog:@/etc/rlog-requests.conf
 *   logger = errors rlog:sock_type=udp,host=127.0.0.1,port=5141     (a named logger)
 *
 * The argument after "rlog:" is rlog config (see rlog's README): either "@PATH", a config file
 * read as it is, or "key=value" items separated by ",". A "," inside a double-quoted value or
 * written "\," belongs to the value; quoted values keep rlog's escapes (\" \\ \n \t).
 *
 * Each uWSGI logger instance gets its own rlog logger, created the first time it logs, in the
 * process that logs (the master's log thread, with --log-master; uWSGI copies the logger
 * struct per --logger option, so one instance is one rlog_logger). Every config is checked at
 * startup: one rlog refuses stops uWSGI, before it serves, with rlog's message on the original
 * stderr, once.
 *
 * A config that does not set periodic_flush (or max_coalescing_delay) gets "periodic_flush = 1": uWSGI's lines reach the
 * collector within about a second (and a collector that is down is reported within seconds)
 * instead of waiting below flush_limit until shutdown. "periodic_flush = 0" turns it off.
 *
 * On shutdown and on reload, the plugin first drains what is still waiting in uWSGI's log
 * pipes (the master's own last lines, "goodbye to uWSGI." included), then delivers what rlog
 * holds within the config's timeout and frees the loggers. Messages logged after that go to
 * the original stderr: nothing vanishes. rlog's pending errors (dropped messages, a collector
 * that is down) are reported on the original stderr, at most once a second per logger, checked
 * as messages are logged and on every master cycle.
 *
 * "The original stderr" is the stderr uWSGI was started with, kept when the plugin is loaded
 * (before uWSGI points fds 1 and 2 at its log pipe and keeps only the original stdout). With
 * --daemonize or --logto it is uWSGI's log file, as for uWSGI's own messages; after a graceful
 * reload, uWSGI has replaced stderr with its original stdout before exec'ing itself.
 */

#include <uwsgi.h>
#include <rlog.h>

extern struct uwsgi_server uwsgi;

#define RLOG_ERR_LEN 1024

/* Added to a config that does not set the key (see the top of this file). */
#define RLOG_DEFAULT_PERIODIC_FLUSH "1"
/* The library's default "timeout", in ms: the bound of the delivery at shutdown. */
#define RLOG_DEFAULT_TIMEOUT "1000"

struct rlog_instance {
	struct uwsgi_logger *ul;
	rlog_logger *lg;
	pid_t owner;              /* the process that created lg */
	time_t last_report;       /* last time a pending error was printed */
	time_t last_check;        /* last time the pending error was looked at */
	char timeout[32];         /* the config's "timeout" (ms), for the shutdown report */
	char last_error[RLOG_ERR_LEN]; /* the last error reported, for the shutdown report */
	struct rlog_instance *next;
};

static struct rlog_instance *rlog_instances;
static pthread_mutex_t rlog_lock = PTHREAD_MUTEX_INITIALIZER;
static int rlog_shut;             /* set once the loggers are freed: fall back to stderr */
static int rlog_atexit_set;
static int rlog_stderr_fd = -1;   /* the stderr uWSGI started with, kept by rlog_register */

/* Where rlog's own messages go: the original stderr (fd 2 is uWSGI's log pipe in every
 * process with a log master, and uWSGI's original_log_fd is its original stdout). */
static int rlog_err_fd(void) {
	/* --daemonize / --logto: uWSGI sent fds 1 and 2 to its log file after the plugin was
	   loaded, so the kept descriptor is stale; uWSGI's original_log_fd is that file. */
	if (uwsgi.daemonize || uwsgi.daemonize2 || uwsgi.logfile || uwsgi.logto2 || rlog_stderr_fd < 0)
		return uwsgi.original_log_fd > -1 ? uwsgi.original_log_fd : 2;
	return rlog_stderr_fd;
}

/* Writes rlog's own messages (see rlog_err_fd). */
static void rlog_say(const char *fmt, ...) {
	char buf[RLOG_ERR_LEN * 2 + 512];
	va_list ap;
	int fd = rlog_err_fd();
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t) n >= sizeof(buf))
		n = sizeof(buf) - 1;
	if (write(fd, buf, n) < 0) {
		/* nowhere left to report to */
	}
}

/* Reads a whole file (the "@PATH" form); NULL with errno set on failure (EINVAL: the file holds a
   NUL byte, which would end the config text there and hide every line after it). */
static char *rlog_read_file(const char *path) {
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	size_t cap = 4096, len = 0;
	char *text = malloc(cap);
	if (!text) {
		fclose(f);
		return NULL;
	}
	for (;;) {
		if (len + 1 >= cap) {
			char *bigger = realloc(text, cap * 2);
			if (!bigger) {
				free(text);
				fclose(f);
				errno = ENOMEM;
				return NULL;
			}
			text = bigger;
			cap *= 2;
		}
		size_t n = fread(text + len, 1, cap - len - 1, f);
		len += n;
		if (n == 0)
			break;
	}
	int failed = ferror(f);
	fclose(f);
	if (failed) {
		free(text);
		errno = EIO;
		return NULL;
	}
	if (memchr(text, 0, len)) {
		free(text);
		errno = EINVAL;
		return NULL;
	}
	text[len] = 0;
	return text;
}

/*
 * "k=v,k2=\"a, b\",k3=x\,y" -> "k=v\nk2=\"a, b\"\nk3=x,y\n": items become lines; "," inside
 * double quotes (where rlog's own escapes are kept for rlog) or written "\," stays.
 */
static char *rlog_items_to_text(const char *arg) {
	size_t len = strlen(arg);
	char *out = malloc(len + 2);
	if (!out)
		return NULL;
	size_t o = 0;
	int quoted = 0;
	for (size_t i = 0; i < len; i++) {
		char c = arg[i];
		if (quoted) {
			out[o++] = c;
			if (c == '\\' && i + 1 < len)
				out[o++] = arg[++i];
			else if (c == '"')
				quoted = 0;
		}
		else if (c == '\\' && i + 1 < len && (arg[i + 1] == ',' || arg[i + 1] == '\\')) {
			out[o++] = arg[++i];
		}
		else if (c == ',') {
			out[o++] = '\n';
		}
		else {
			if (c == '"')
				quoted = 1;
			out[o++] = c;
		}
	}
	out[o++] = '\n';
	out[o] = 0;
	return out;
}

static void rlog_shutdown_all(void);

/* Stops uWSGI after a fatal config problem was said. rlog_shut first: exit() runs uWSGI's
 * handlers, which hand its last buffered lines to this logger; they must go to the original
 * output, not into a second attempt at the same config (that printed the error twice). */
static void rlog_die(void) {
	rlog_shut = 1;
	exit(1);
}

/*
 * The value of `key` in config text (the last setting wins), trimmed, into out; 1 if the text
 * sets it, else 0. Lines as rlog reads them: "key = value", blanks around both, "_" and "-" the
 * same in keys, "#" and ";" comments. A quoted value is copied with its quotes.
 */
static int rlog_config_value(const char *text, const char *key, char *out, size_t out_len) {
	int found = 0;
	const char *line = text;
	while (line && *line) {
		const char *end = strchr(line, '\n');
		const char *next = end ? end + 1 : NULL;
		if (!end)
			end = line + strlen(line);
		const char *p = line;
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		const char *eq = memchr(p, '=', end - p);
		if (p < end && *p != '#' && *p != ';' && eq) {
			const char *k = p, *kend = eq;
			while (kend > k && (kend[-1] == ' ' || kend[-1] == '\t'))
				kend--;
			size_t i, n = strlen(key);
			int same = (size_t) (kend - k) == n;
			for (i = 0; same && i < n; i++) {
				char a = k[i] == '-' ? '_' : k[i], b = key[i] == '-' ? '_' : key[i];
				same = a == b;
			}
			if (same) {
				const char *v = eq + 1, *vend = end;
				while (v < vend && (*v == ' ' || *v == '\t'))
					v++;
				while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t' || vend[-1] == '\r'))
					vend--;
				size_t len = (size_t) (vend - v);
				if (out_len) {
					if (len >= out_len)
						len = out_len - 1;
					memcpy(out, v, len);
					out[len] = 0;
				}
				found = 1;
			}
		}
		line = next;
	}
	return found;
}

/*
 * text (malloc'd) with "periodic_flush = 1" appended when it does not set periodic_flush (nor
 * max_coalescing_delay, Kong's name for it: setting both is a config error).
 */
static char *rlog_with_defaults(char *text) {
	if (rlog_config_value(text, "periodic_flush", NULL, 0) ||
	    rlog_config_value(text, "max_coalescing_delay", NULL, 0))
		return text;
	size_t len = strlen(text);
	const char *add = "periodic_flush = " RLOG_DEFAULT_PERIODIC_FLUSH "\n";
	char *out = realloc(text, len + strlen(add) + 2);
	if (!out) {
		free(text);
		return NULL;
	}
	if (len && out[len - 1] != '\n')
		out[len++] = '\n';
	strcpy(out + len, add);
	return out;
}

/* The config text of ul's argument (malloc'd), or stops uWSGI with the reason. */
static char *rlog_config_text(struct uwsgi_logger *ul) {
	const char *arg = ul->arg;
	if (!arg || !*arg) {
		rlog_say("[rlog] the rlog logger needs a config: rlog:host=HOST,port=PORT[,key=value...] or rlog:@/path/to/rlog.conf\n");
		rlog_die();
	}
	char *text = arg[0] == '@' ? rlog_read_file(arg + 1) : rlog_items_to_text(arg);
	if (!text) {
		if (errno == EINVAL)
			rlog_say("[rlog] cannot read the config of logger \"rlog:%s\": the file contains a NUL byte\n", arg);
		else
			rlog_say("[rlog] cannot read the config of logger \"rlog:%s\": %s\n", arg, strerror(errno));
		rlog_die();
	}
	text = rlog_with_defaults(text);
	if (!text) {
		rlog_say("[rlog] out of memory\n");
		rlog_die();
	}
	return text;
}

/* A new rlog logger for ul, or stops uWSGI with rlog's message (as uWSGI's loggers do).
 * timeout (when not NULL) receives the config's "timeout", for the shutdown report. */
static rlog_logger *rlog_new_or_die(struct uwsgi_logger *ul, char *timeout, size_t timeout_len) {
	char *text = rlog_config_text(ul);
	char err[RLOG_ERR_LEN];
	err[0] = 0;
	rlog_logger *lg = rlog_logger_new(text, err, sizeof(err));
	if (timeout && !rlog_config_value(text, "timeout", timeout, timeout_len))
		snprintf(timeout, timeout_len, "%s", RLOG_DEFAULT_TIMEOUT);
	free(text);
	if (!lg) {
		rlog_say("[rlog] bad config for logger \"rlog:%s\": %s\n", ul->arg, err);
		rlog_die();
	}
	return lg;
}

/* Creates the rlog logger of ul in this process. */
static struct rlog_instance *rlog_configure(struct uwsgi_logger *ul) {
	struct rlog_instance *in = calloc(1, sizeof(*in));
	if (!in) {
		rlog_say("[rlog] out of memory\n");
		rlog_die();
	}
	rlog_logger *lg = rlog_new_or_die(ul, in->timeout, sizeof(in->timeout));
	in->ul = ul;
	in->lg = lg;
	in->owner = getpid();
	pthread_mutex_lock(&rlog_lock);
	in->next = rlog_instances;
	rlog_instances = in;
	if (!rlog_atexit_set) {
		/*
		 * Registered after librlog's own exit hook (installed by the first rlog_logger_new),
		 * so it runs first: uWSGI's last lines are drained into rlog before rlog's exit flush.
		 */
		atexit(rlog_shutdown_all);
		rlog_atexit_set = 1;
	}
	pthread_mutex_unlock(&rlog_lock);
	return in;
}

static ssize_t rlog_uwsgi_log(struct uwsgi_logger *ul, char *message, size_t len);

/*
 * At startup, in the master before any worker exists: every rlog logger's config is checked
 * by creating (and at once freeing) an rlog logger from it, so a bad config stops uWSGI with
 * rlog's message before it serves, rather than at its first log line.
 */
static int rlog_check_configs(void) {
	struct uwsgi_logger *lists[2] = { uwsgi.choosen_logger, uwsgi.choosen_req_logger };
	int i;
	for (i = 0; i < 2; i++) {
		struct uwsgi_logger *ul;
		for (ul = lists[i]; ul; ul = ul->next) {
			if (ul->func == rlog_uwsgi_log)
				rlog_logger_free(rlog_new_or_die(ul, NULL, 0), 0);
		}
	}
	return 0;
}

/* Prints lg's pending error, if any, at most once a second. */
static void rlog_report(struct rlog_instance *in, int force) {
	time_t now = time(NULL);
	if (!force && now == in->last_report)
		return;
	char err[RLOG_ERR_LEN];
	if (rlog_logger_last_error(in->lg, err, sizeof(err)) > 0) {
		in->last_report = now;
		snprintf(in->last_error, sizeof(in->last_error), "%s", err);
		rlog_say("[rlog] logger \"rlog:%s\": %s\n", in->ul->arg ? in->ul->arg : "", err);
	}
}

static ssize_t rlog_uwsgi_log(struct uwsgi_logger *ul, char *message, size_t len) {
	if (rlog_shut) {
		/* After shutdown (the moments before exit or exec): the original stderr. */
		int fd = uwsgi.original_log_fd > -1 ? uwsgi.original_log_fd : 2;
		return write(fd, message, len);
	}
	if (!ul->configured) {
		ul->data = rlog_configure(ul);
		ul->configured = 1;
	}
	struct rlog_instance *in = (struct rlog_instance *) ul->data;
	int n = rlog_logger_log(in->lg, message, len);
	time_t now = time(NULL);
	if (n <= 0 || now != in->last_check) {
		in->last_check = now;
		rlog_report(in, 0);
	}
	if (n < 0)
		return -1;
	return n;
}

/* Feeds what is still waiting in uWSGI's log pipes to the loggers (master only). */
static void rlog_drain_pipes(void) {
	if (!uwsgi.log_master || !uwsgi.workers || uwsgi.workers[0].pid != getpid() || !uwsgi.log_master_buf)
		return;
	int i;
	for (i = 0; i < 100000; i++) {
		if (uwsgi_master_log())
			break;
	}
	if (uwsgi.req_log_master) {
		for (i = 0; i < 100000; i++) {
			if (uwsgi_master_req_log())
				break;
		}
	}
}

/* Drains, delivers within each config's timeout, frees. Idempotent; acts only in the process
 * that created the loggers (uWSGI's children inherit atexit handlers). */
static void rlog_shutdown_all(void) {
	/* Which process is this? Asked before taking any lock: a child (a worker, mule or gateway)
	 * owns none of the loggers, and one forked while the master's logger thread held
	 * threaded_logger_lock has a copy of that mutex that stays locked for good, so locking it
	 * here would hang its exit. The list only changes in the owner while it configures. */
	int mine = 0;
	struct rlog_instance *in;
	for (in = rlog_instances; in; in = in->next)
		if (in->owner == getpid())
			mine = 1;
	if (!mine)
		return;
	int threaded = uwsgi.threaded_logger && uwsgi.log_master;
	if (threaded)
		pthread_mutex_lock(&uwsgi.threaded_logger_lock);
	if (!rlog_shut) {
		rlog_drain_pipes();
		rlog_shut = 1;
		pthread_mutex_lock(&rlog_lock);
		for (in = rlog_instances; in; in = in->next) {
			if (in->owner != getpid())
				continue;
			struct rlog_stats st;
			memset(&st, 0, sizeof(st));
			rlog_logger_stats(in->lg, &st, sizeof(st));
			rlog_report(in, 1);
			/* The free answers for the logger's whole life; only what it held now is news. */
			if (rlog_logger_free(in->lg, -1) != 0 && st.buffered > 0) {
				/* Why: the last error rlog reported for this logger (a collector down, refusing,
				   timing out), or that none came and the collector was just too slow. */
				rlog_say("[rlog] logger \"rlog:%s\": held %llu messages (%llu bytes) at shutdown and "
					 "could not deliver them all within its timeout (%s ms), so they are lost: %s%s "
					 "(logged %llu, sent %llu, lost %llu, dropped %llu before)\n",
					 in->ul->arg ? in->ul->arg : "", (unsigned long long) st.buffered,
					 (unsigned long long) st.buffered_bytes, in->timeout,
					 in->last_error[0] ? "the last error rlog reported was: " : "",
					 in->last_error[0] ? in->last_error : "no delivery error was reported, the collector did not take them in time",
					 (unsigned long long) st.logged,
					 (unsigned long long) st.sent, (unsigned long long) st.lost,
					 (unsigned long long) st.dropped);
			}
			in->lg = NULL;
		}
		pthread_mutex_unlock(&rlog_lock);
	}
	if (threaded)
		pthread_mutex_unlock(&uwsgi.threaded_logger_lock);
}

/* Once per master loop (about a second): reports pending errors even when nothing is logged. */
static void rlog_master_cycle(void) {
	int threaded = uwsgi.threaded_logger && uwsgi.log_master;
	if (threaded)
		pthread_mutex_lock(&uwsgi.threaded_logger_lock);
	if (!rlog_shut) {
		pthread_mutex_lock(&rlog_lock);
		struct rlog_instance *in;
		for (in = rlog_instances; in; in = in->next) {
			if (in->owner == getpid() && in->lg) {
				in->last_check = time(NULL);
				rlog_report(in, 0);
			}
		}
		pthread_mutex_unlock(&rlog_lock);
	}
	if (threaded)
		pthread_mutex_unlock(&uwsgi.threaded_logger_lock);
}

static void rlog_register(void) {
	/* Keep the stderr uWSGI was started with: once its log master runs, fds 1 and 2 are its log
	   pipe and only the original stdout is kept (see rlog_err_fd). */
	if (rlog_stderr_fd < 0)
		rlog_stderr_fd = fcntl(2, F_DUPFD_CLOEXEC, 3);
	uwsgi_register_logger("rlog", rlog_uwsgi_log);
	/* uWSGI copies the registered logger for each `logger = rlog...` line and sets `arg` only
	   when the line has a colon; the registered one's `arg` is not initialised, so a bare
	   `rlog` would hand us garbage. Clear it: a bare `rlog` then means "no config". */
	struct uwsgi_logger *ul = uwsgi_get_logger("rlog");
	if (ul)
		ul->arg = NULL;
}

struct uwsgi_plugin rlog_plugin = {
	.name = "rlog",
	.on_load = rlog_register,
	.init = rlog_check_configs,
	.master_cycle = rlog_master_cycle,
	.master_cleanup = rlog_shutdown_all,
};
