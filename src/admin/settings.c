/*
 * The settings handlers. Files are small and admin actions rare, so they are read, checked and
 * written on the loop, as a reload already is; a save costs one load of the configuration to
 * check it and one to take it.
 */
#include "admin/settings.h"

#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "admin/audit.h"
#include "admin/diff.h"
#include "conf/conf.h"
#include "conf/edit.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/strv.h"
#include "core/xmalloc.h"
#include "http/errors.h"
#include "models/discovery.h"
#include "proc/argv.h"

static const char *const file_names[ADMIN_SETTINGS_FILES] = {"goinfer.yml", "llama-swap.yml"};

/* A file as read now: its text (NULL data when absent), owned. */
struct disk {
    char *path;
    char *data;
    size_t len;
    struct stat st;
};

static void
disk_cleanup(struct disk *d)
{
    free(d->path);
    free(d->data);
    memset(d, 0, sizeof(*d));
}

/* Reads path (taken over) into d. Returns 0 (absent too), or -errno with err. */
static int
disk_read_path(char *path, struct disk *d, char *err, size_t errlen)
{
    FILE *f;
    int rc = 0;

    memset(d, 0, sizeof(*d));
    d->path = path;
    f = fopen(d->path, "rb");
    if (f == NULL)
        return errno == ENOENT ? 0 : -errno;
    if (fstat(fileno(f), &d->st) != 0 || d->st.st_size > ADMIN_SETTINGS_MAX) {
        snprintf(err, errlen, "%s: larger than %u bytes, or unreadable", d->path,
                 ADMIN_SETTINGS_MAX);
        rc = -EFBIG;
    } else {
        d->data = xmalloc((size_t)d->st.st_size + 1);
        d->len = fread(d->data, 1, (size_t)d->st.st_size, f);
        d->data[d->len] = '\0';
        if (ferror(f))
            rc = -EIO;
    }
    fclose(f);
    return rc;
}

/* Reads file i of the pair. */
static int
disk_read(const struct admin_settings_ops *ops, int i, struct disk *d, char *err, size_t errlen)
{
    const char *file = ops->file(ops->arg);

    memset(d, 0, sizeof(*d));
    if (file == NULL) {
        snprintf(err, errlen, "Goinfer runs without a goinfer.yml (start it with -config FILE)");
        return -ENOENT;
    }
    return disk_read_path(i == 0 ? xstrdup(file) : conf_swap_file_for(file), d, err, errlen);
}

/* sha256 of the text, in hex; JSON null for an absent file. */
static json_t *
hash_json(const char *data, size_t len)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1];

    if (data == NULL || EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) != 1)
        return json_null();
    for (unsigned int i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return json_stringn(hex, 2 * n);
}

static json_t *
text_json(const char *data, size_t len)
{
    json_t *s = data ? json_stringn(data, len) : NULL;

    return s ? s : json_null(); /* not UTF-8: shown as absent rather than cut */
}

/* Which file of the pair a name means: "goinfer.yml"/"goinfer", "llama-swap.yml"/"llama-swap",
 * or the real base name. -1 when none. */
static int
file_index(const struct admin_settings_ops *ops, const char *name)
{
    const char *file = ops->file(ops->arg), *slash = file ? strrchr(file, '/') : NULL;

    for (int i = 0; i < ADMIN_SETTINGS_FILES; i++)
        if (strcmp(name, file_names[i]) == 0 ||
            (strncmp(name, file_names[i], strlen(file_names[i]) - 4) == 0 &&
             strlen(name) == strlen(file_names[i]) - 4))
            return i;
    if (file != NULL && strcmp(name, slash ? slash + 1 : file) == 0)
        return 0;
    return -1;
}

/* ---- messages of the loader as {file, line, message} ---- */

static json_t *
problem_json(const struct admin_settings_ops *ops, const char *msg)
{
    const char *file = ops->file(ops->arg);
    char *paths[2] = {file ? xstrdup(file) : NULL, file ? conf_swap_file_for(file) : NULL};
    json_t *o = json_object();

    for (int i = 0; i < 2 && paths[i] != NULL; i++) {
        size_t n = strlen(paths[i]);
        char *end = NULL;
        unsigned long line;

        if (strncmp(msg, paths[i], n) != 0 || msg[n] != ':' || msg[n + 1] < '0' || msg[n + 1] > '9')
            continue;
        line = strtoul(msg + n + 1, &end, 10);
        if (*end != ':')
            continue;
        json_object_set_new(o, "file", json_string(file_names[i]));
        json_object_set_new(o, "line", json_integer((json_int_t)line));
        msg = end + 1 + (end[1] == ' ');
        break;
    }
    json_object_set_new(o, "message", json_string(msg));
    free(paths[0]);
    free(paths[1]);
    return o;
}

/* The pair checked: {ok, errors, warnings}. Returns the loader's code. */
static int
check_pair(const struct admin_settings_ops *ops, const struct admin_text text[2], json_t **out)
{
    char err[2048] = "", **warnings = NULL;
    json_t *errors = json_array(), *warns = json_array();
    int rc = ops->check(ops->arg, text, err, sizeof(err), &warnings);

    if (rc < 0)
        json_array_append_new(errors, problem_json(ops, err));
    for (size_t i = 0; warnings && warnings[i]; i++)
        json_array_append_new(warns, problem_json(ops, warnings[i]));
    strv_free(warnings);
    *out = json_pack("{s:b, s:o, s:o}", "ok", rc >= 0, "errors", errors, "warnings", warns);
    return rc;
}

/* ---- saving: a backup, then an atomic write ---- */

static int
by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Keeps the newest ADMIN_SETTINGS_BACKUPS "<base>.bak.<time>" beside path. */
static void
prune_backups(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? xstrndup(path, (size_t)(slash - path)) : xstrdup("."),
         *prefix = xasprintf("%s.bak.", slash ? slash + 1 : path), **names = NULL;
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n;

    for (e = d ? readdir(d) : NULL; e != NULL; e = readdir(d))
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
            strv_add(&names, e->d_name, strlen(e->d_name));
    if (d != NULL)
        closedir(d);
    n = strv_len(names);
    if (n > ADMIN_SETTINGS_BACKUPS)
        qsort(names, n, sizeof(*names), by_name);
    for (size_t i = 0; n > ADMIN_SETTINGS_BACKUPS && i < n - ADMIN_SETTINGS_BACKUPS; i++) {
        char *old = xasprintf("%s/%s", dir, names[i]);

        if (unlink(old) != 0)
            log_warn("settings: removing old backup %s", old);
        free(old);
    }
    strv_free(names);
    free(prefix);
    free(dir);
}

static int
write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, data, len);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        data += w;
        len -= (size_t)w;
    }
    return 0;
}

/* path replaced by data whole or not at all: a temporary file beside it, fsync, the old mode,
 * rename, then the folder synced so the new name survives a crash. */
static int
write_atomic(const char *path, const char *data, size_t len, mode_t mode)
{
    const char *slash = strrchr(path, '/');
    char *tmp = slash ? xasprintf("%.*s/.%s.tmp-XXXXXX", (int)(slash - path), path, slash + 1)
                      : xasprintf(".%s.tmp-XXXXXX", path),
         *dir = slash ? xstrndup(path, (size_t)(slash - path)) : xstrdup(".");
    int fd = mkostemp(tmp, O_CLOEXEC), dfd = -1, rc = 0;

    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    rc = write_all(fd, data, len);
    if (rc == 0 && (fchmod(fd, mode & 07777) != 0 || fsync(fd) != 0))
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc < 0)
        unlink(tmp);
    dfd = rc == 0 ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
out:
    free(tmp);
    free(dir);
    return rc;
}

/* Backs up what path holds now (when it exists) as "<path>.bak.<UTC time>", then writes data in
 * its place, keeping its mode (0600 for a new file: it may hold keys). *backup: the copy's path,
 * or NULL. */
static int
save_file(const struct disk *d, const char *data, size_t len, char **backup, char *err,
          size_t errlen)
{
    mode_t mode = d->data ? d->st.st_mode : 0600;
    struct timespec now;
    struct tm tm;
    char stamp[64];
    int rc;

    *backup = NULL;
    if (d->data != NULL) {
        clock_gettime(CLOCK_REALTIME, &now);
        gmtime_r(&now.tv_sec, &tm);
        strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%S", &tm);
        *backup = xasprintf("%s.bak.%s.%03ldZ", d->path, stamp, now.tv_nsec / 1000000);
        rc = write_atomic(*backup, d->data, d->len, d->st.st_mode);
        if (rc < 0) {
            snprintf(err, errlen, "cannot back up %s as %s: %s", d->path, *backup, strerror(-rc));
            free(*backup);
            *backup = NULL;
            return rc;
        }
        prune_backups(d->path);
    }
    rc = write_atomic(d->path, data, len, mode);
    if (rc < 0)
        snprintf(err, errlen, "cannot write %s: %s", d->path, strerror(-rc));
    return rc;
}

/* ---- the handlers ---- */

static json_t *
body_json(struct http_request *req)
{
    json_error_t jerr;
    json_t *o = json_loadb(req->body.data ? req->body.data : "", req->body.len, 0, &jerr);

    if (o != NULL && !json_is_object(o)) {
        json_decref(o);
        o = NULL;
    }
    if (o == NULL)
        http_respond_error(req, 400, "invalid_request_error", "the body must be a JSON object");
    return o;
}

static void
respond_errno(struct http_request *req, int rc, const char *err)
{
    http_respond_error(req, rc == -ENOENT ? 404 : 500, rc == -ENOENT ? "not_found" : "server_error",
                       "%s", err[0] ? err : strerror(-rc));
}

/* Whether the file on disk (absent or not, and its bytes) is the text in force. */
static bool
disk_is_in_force(const struct disk *d, const struct admin_text *force)
{
    return (d->data == NULL) == (force->data == NULL) &&
           (d->data == NULL || (d->len == force->len && memcmp(d->data, force->data, d->len) == 0));
}

void
admin_config_get(struct http_request *req, const struct admin_settings_ops *ops)
{
    struct admin_text force[2];
    json_t *files = json_array();
    char err[512] = "";
    bool same = true;

    ops->in_force(ops->arg, force);
    for (int i = 0; i < ADMIN_SETTINGS_FILES; i++) {
        struct disk d;
        int rc = disk_read(ops, i, &d, err, sizeof(err));
        bool in_force = rc >= 0 && disk_is_in_force(&d, &force[i]);

        if (rc < 0) {
            disk_cleanup(&d);
            json_decref(files);
            respond_errno(req, rc, err);
            return;
        }
        same &= in_force;
        json_array_append_new(
            files,
            json_pack("{s:s, s:s, s:b, s:o, s:o, s:f, s:I, s:b}", "name", file_names[i], "path",
                      d.path, "exists", d.data != NULL, "text", text_json(d.data, d.len), "hash",
                      hash_json(d.data, d.len), "mtime",
                      d.data ? (double)d.st.st_mtim.tv_sec + d.st.st_mtim.tv_nsec / 1e9 : 0.0,
                      "size", (json_int_t)d.len, "in_force", in_force));
        disk_cleanup(&d);
    }
    http_respond_json(req, 200, json_pack("{s:o, s:b}", "files", files, "in_force", same));
}

/* The pair with file i's text replaced by text (the other as it is on disk now). */
static int
pair_with(const struct admin_settings_ops *ops, int i, const char *text, size_t len,
          struct disk other[1], struct admin_text pair[2], char *err, size_t errlen)
{
    int rc = disk_read(ops, 1 - i, other, err, errlen);

    pair[i] = (struct admin_text){text, len};
    pair[1 - i] = (struct admin_text){other->data, other->len};
    return rc;
}

void
admin_config_validate(struct http_request *req, const struct admin_settings_ops *ops)
{
    json_t *body = body_json(req), *out = NULL;
    const char *name = NULL, *text = NULL;
    size_t len = 0;
    struct admin_text pair[2];
    struct disk other = {0};
    char err[512] = "";
    int i, rc;

    if (body == NULL)
        return;
    if (json_unpack(body, "{s:s, s:s%}", "file", &name, "text", &text, &len) != 0)
        name = "";
    i = file_index(ops, name);
    if (i < 0 || len > ADMIN_SETTINGS_MAX) {
        http_respond_error(req, 400, "invalid_request_error",
                           "expected {\"file\": \"goinfer.yml\" or \"llama-swap.yml\", "
                           "\"text\": \"...\"}");
        goto out;
    }
    rc = pair_with(ops, i, text, len, &other, pair, err, sizeof(err));
    if (rc < 0) {
        respond_errno(req, rc, err);
        goto out;
    }
    check_pair(ops, pair, &out);
    json_object_set_new(out, "file", json_string(file_names[i]));
    http_respond_json(req, 200, out);
out:
    disk_cleanup(&other);
    json_decref(body);
}

/*
 * d (as read now) becomes text: backed up, written atomically, then the configuration reloaded.
 * Answers 200 with what was written, what the reload did and the diff, or 500 when the write
 * failed (nothing changed then). extra (taken over) is merged into the answer.
 */
static void
commit(struct http_request *req, const struct admin_settings_ops *ops, const struct disk *d,
       const char *label, const char *text, size_t len, json_t *extra, const char *action,
       const char *target)
{
    char err[2048] = "", *backup = NULL, *diff, *old_name, *new_name;
    json_t *out, *reload;
    int rc = save_file(d, text, len, &backup, err, sizeof(err));

    if (rc < 0) {
        audit_record(req, action, target, 500);
        http_respond_error(req, 500, "server_error", "%s", err);
        json_decref(extra);
        return;
    }
    log_info("settings: wrote %s%s%s", d->path, backup ? ", previous text kept as " : "",
             backup ? backup : "");
    err[0] = '\0';
    rc = ops->reload(ops->arg, action, err, sizeof(err));
    reload = rc == 0 ? json_pack("{s:b}", "taken", 1)
                     : json_pack("{s:b, s:s}", "taken", 0, "error", err);
    old_name = xasprintf("a/%s", label);
    new_name = xasprintf("b/%s", label);
    diff = admin_diff(old_name, d->data ? d->data : "", d->len, new_name, text, len);
    out = json_pack("{s:b, s:s, s:o, s:o, s:o, s:s}", "saved", 1, "path", d->path, "backup",
                    backup ? json_string(backup) : json_null(), "hash", hash_json(text, len),
                    "reload", reload, "diff", diff);
    if (extra != NULL)
        json_object_update(out, extra);
    json_decref(extra);
    audit_record(req, action, target, 200);
    http_respond_json(req, 200, out);
    free(old_name);
    free(new_name);
    free(diff);
    free(backup);
}

/* 422 with the loader's errors at their line when the pair does not load; true when it does. */
static bool
pair_valid(struct http_request *req, const struct admin_settings_ops *ops,
           const struct admin_text pair[2], const char *action, const char *target)
{
    json_t *result = NULL;

    if (check_pair(ops, pair, &result) >= 0) {
        json_decref(result);
        return true;
    }
    json_object_set_new(result, "error",
                        json_pack("{s:s, s:s, s:i}", "message",
                                  "the configuration does not load; nothing was written", "type",
                                  "invalid_request_error", "code", 422));
    audit_record(req, action, target, 422);
    http_respond_json(req, 422, result);
    return false;
}

void
admin_config_put(struct http_request *req, const struct admin_settings_ops *ops)
{
    const char *name = req->path + strlen("/api/config/"), *text = NULL;
    json_t *body = body_json(req), *base = NULL, *now = NULL;
    struct disk d = {0}, other = {0};
    struct admin_text pair[2];
    char err[512] = "";
    size_t len = 0;
    int i = file_index(ops, name), rc;

    if (body == NULL)
        return;
    if (i < 0 || json_unpack(body, "{s:s%, s?o}", "text", &text, &len, "base_hash", &base) != 0 ||
        len > ADMIN_SETTINGS_MAX) {
        http_respond_error(req, i < 0 ? 404 : 400, "invalid_request_error",
                           i < 0 ? "no configuration file '%s' (goinfer.yml or llama-swap.yml)"
                                 : "expected {\"text\": \"...\", \"base_hash\": \"<hash from "
                                   "GET /api/config>\"} (%s)",
                           name);
        goto out;
    }
    rc = disk_read(ops, i, &d, err, sizeof(err));
    if (rc == 0)
        rc = pair_with(ops, i, text, len, &other, pair, err, sizeof(err));
    if (rc < 0) {
        respond_errno(req, rc, err);
        goto out;
    }
    now = hash_json(d.data, d.len);
    if (base == NULL || !json_equal(base, now)) {
        audit_record(req, "config.save", file_names[i], 409);
        http_respond_json(req, 409,
                          json_pack("{s:{s:s, s:s, s:i}, s:O}", "error", "message",
                                    "the file changed since base_hash: read it again (GET "
                                    "/api/config) and merge",
                                    "type", "conflict", "code", 409, "hash", now));
        goto out;
    }
    if (pair_valid(req, ops, pair, "config.save", file_names[i]))
        commit(req, ops, &d, file_names[i], text, len, NULL, "config.save", file_names[i]);
out:
    json_decref(now);
    disk_cleanup(&d);
    disk_cleanup(&other);
    json_decref(body);
}

void
admin_config_diff(struct http_request *req, const struct admin_settings_ops *ops)
{
    struct admin_text force[2];
    json_t *files = json_array();
    char err[512] = "";
    bool same = true;

    ops->in_force(ops->arg, force);
    for (int i = 0; i < ADMIN_SETTINGS_FILES; i++) {
        struct disk d;
        char *a = xasprintf("in-force/%s", file_names[i]), *b = xasprintf("disk/%s", file_names[i]),
             *diff;
        int rc = disk_read(ops, i, &d, err, sizeof(err));
        bool in_force;

        if (rc < 0) {
            free(a);
            free(b);
            disk_cleanup(&d);
            json_decref(files);
            respond_errno(req, rc, err);
            return;
        }
        diff = admin_diff(a, force[i].data ? force[i].data : "", force[i].len, b,
                          d.data ? d.data : "", d.len);
        in_force = disk_is_in_force(&d, &force[i]);
        same &= in_force;
        json_array_append_new(files, json_pack("{s:s, s:s, s:b}", "name", file_names[i], "diff",
                                               diff, "same", in_force));
        free(diff);
        free(a);
        free(b);
        disk_cleanup(&d);
    }
    http_respond_json(req, 200, json_pack("{s:b, s:o}", "same", same, "files", files));
}

void
admin_restart(struct http_request *req, const struct admin_settings_ops *ops)
{
    char err[512] = "";
    int rc = ops->restart(ops->arg, "POST /api/restart", err, sizeof(err));

    audit_record(req, "restart", NULL, rc == 0 ? 202 : 409);
    if (rc == 0)
        http_respond_json(req, 202,
                          json_pack("{s:b, s:I}", "restarting", 1, "pid", (json_int_t)getpid()));
    else
        http_respond_error(req, 409, "conflict", "restart refused: %s", err);
}

/* ---- a model's llama-server arguments ---- */

#define CMD_MAX_WORDS 512

struct span {
    const char *p;
    size_t n;
};

/* The words of a cmd as written (quotes kept), so the ones kept are written back unchanged. */
static size_t
cmd_words(const char *s, struct span *v, size_t max)
{
    size_t n = 0;

    while (*s) {
        const char *start;
        char q = 0;

        while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' ||
               (*s == '\\' && (s[1] == '\n' || (s[1] == '\r' && s[2] == '\n'))))
            s += *s == '\\' ? (s[1] == '\r' ? 3 : 2) : 1;
        if (*s == '\0')
            break;
        for (start = s; *s && (q || !strchr(" \t\r\n", *s)); s++) {
            if (q == 0 && (*s == '\'' || *s == '"'))
                q = *s;
            else if (q != 0 && *s == q)
                q = 0;
            else if (*s == '\\' && q != '\'' && s[1])
                s++;
        }
        if (n < max)
            v[n++] = (struct span){start, (size_t)(s - start)};
    }
    return n;
}

/* --mmproj FILE (1) or --mmproj=FILE (2): the model's projector, its own file. */
static int
projector_flag(const char *w)
{
    if (strcmp(w, "--mmproj") == 0 || strcmp(w, "-mm") == 0)
        return 1;
    return strncmp(w, "--mmproj=", 9) == 0 || strncmp(w, "-mm=", 4) == 0 ? 2 : 0;
}

/* Whether a written word is kept in a cmd: 1 a flag whose value follows, 2 "--flag=value", 0
 * not kept. Goinfer's reserved flags, and the projector. */
static int
word_reserved(const struct span *w)
{
    char *text = xstrndup(w->p, w->n), **words = NULL;
    int own = 0;

    if (proc_argv_split(text, &words) == 1)
        own = models_flag_reserved(words[0]) ? models_flag_reserved(words[0])
                                             : projector_flag(words[0]);
    proc_argv_free(words);
    free(text);
    return own;
}

/*
 * The rule for a configured cmd: its first word (the program, or a macro such as
 * ${cmd-common}) and the reserved flags with their values (model, host, port, keys, path: what
 * Goinfer needs to reach and name the process) and the projector (--mmproj, the model's own
 * file) are kept; every other word is "the arguments".
 * keep gets the kept words, args the others, each joined by spaces.
 */
static void
cmd_split(const char *cmd, struct buf *keep, struct buf *args)
{
    struct span *w = xcalloc(CMD_MAX_WORDS, sizeof(*w));
    size_t n = cmd_words(cmd, w, CMD_MAX_WORDS);

    for (size_t i = 0; i < n; i++) {
        int own = i == 0 ? 1 : word_reserved(&w[i]);
        struct buf *to = own ? keep : args;

        buf_printf(to, "%s%.*s", to->len ? " " : "", (int)w[i].n, w[i].p);
        if (i > 0 && own == 1 && i + 1 < n && w[i + 1].p[0] != '-') {
            i++;
            buf_printf(keep, " %.*s", (int)w[i].n, w[i].p);
        }
    }
    free(w);
}

/* Appends word, quoted only when a shell would need it (readable YAML). */
static void
put_word(struct buf *b, const char *word)
{
    bool plain = word[0] != '\0';

    for (const char *p = word; *p && plain; p++)
        plain = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:=,+@%",
                       *p) != NULL;
    if (b->len > 0)
        buf_append(b, " ", 1);
    if (plain)
        buf_append(b, word, strlen(word));
    else
        proc_argv_quote(b, word);
}

/* The new arguments as words: 422 (false) for an unclosed quote or a flag Goinfer sets. */
static bool
args_words(struct http_request *req, const char *args, char ***words, const char *target)
{
    *words = NULL;
    if (proc_argv_split(args, words) < 0) {
        audit_record(req, "model.args", target, 422);
        http_respond_error(req, 422, "invalid_request_error", "args: unclosed quote");
        return false;
    }
    for (char **w = *words; *w; w++)
        if (models_flag_reserved(*w)) {
            audit_record(req, "model.args", target, 422);
            http_respond_error(req, 422, "invalid_request_error",
                               "args: %s is set by Goinfer (the model file, host, port and keys "
                               "are its own); leave it out",
                               *w);
            proc_argv_free(*words);
            *words = NULL;
            return false;
        }
    return true;
}

/* Where a configured model's cmd is written: file i of the pair, with its raw cmd; -1 if none. */
static int
cmd_source(const struct admin_settings_ops *ops, const struct model_def *m, struct disk *d,
           char **cmd)
{
    const char *keys[3] = {"models", m->name, "cmd"};
    char err[256];

    for (int i = ADMIN_SETTINGS_FILES - 1; i >= 0; i--) {
        if (disk_read(ops, i, d, err, sizeof(err)) == 0 && d->data != NULL &&
            conf_edit_scalar(d->data, d->len, keys, 3, NULL, cmd, err, sizeof(err)) == 0)
            return i;
        disk_cleanup(d);
    }
    return -1;
}

static void
args_of_cmd(struct http_request *req, const struct admin_settings_ops *ops,
            const struct model_def *m, const char *want)
{
    const char *keys[3] = {"models", m->name, "cmd"};
    struct disk d = {0}, other = {0};
    struct buf keep, args;
    char *cmd = NULL, *text = NULL, **words = NULL, err[512] = "";
    struct admin_text pair[2];
    int i = cmd_source(ops, m, &d, &cmd);

    buf_init(&keep, ADMIN_SETTINGS_MAX);
    buf_init(&args, ADMIN_SETTINGS_MAX);
    if (i < 0) {
        http_respond_error(req, 404, "not_found",
                           "model %s: no models.%s.cmd in goinfer.yml or llama-swap.yml", m->name,
                           m->name);
        goto out;
    }
    cmd_split(cmd, &keep, &args);
    if (want == NULL) {
        http_respond_json(req, 200,
                          json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "model", m->name, "source",
                                    file_names[i], "path", d.path, "cmd", cmd, "keep",
                                    buf_cstr(&keep), "args", buf_cstr(&args)));
        goto out;
    }
    if (!args_words(req, want, &words, m->name))
        goto out;
    for (char **w = words; *w; w++)
        put_word(&keep, *w);
    if (conf_edit_scalar(d.data, d.len, keys, 3, buf_cstr(&keep), &text, err, sizeof(err)) < 0 ||
        pair_with(ops, i, text, strlen(text), &other, pair, err, sizeof(err)) < 0) {
        http_respond_error(req, 500, "server_error", "%s", err);
        goto out;
    }
    if (pair_valid(req, ops, pair, "model.args", m->name))
        commit(req, ops, &d, file_names[i], text, strlen(text),
               json_pack("{s:s, s:s}", "model", m->name, "cmd", buf_cstr(&keep)), "model.args",
               m->name);
out:
    proc_argv_free(words);
    buf_cleanup(&keep);
    buf_cleanup(&args);
    free(cmd);
    free(text);
    disk_cleanup(&d);
    disk_cleanup(&other);
}

/* A discovered model's arguments live in the <stem>.sh beside its file, as the seed keeps them
 * (discovery reads it at every reload): the YAML stays as the user wrote it. */
static void
args_of_script(struct http_request *req, const struct admin_settings_ops *ops,
               const struct model_def *m, const char *want)
{
    char **named = models_flags_from_name(m->path), **words = NULL, err[512] = "";
    struct disk d = {0};
    struct buf b;

    buf_init(&b, ADMIN_SETTINGS_MAX);
    if (named != NULL) {
        http_respond_error(req, 409, "conflict",
                           "model %s takes its flags from its file name (&k=v): rename the file "
                           "to change them",
                           m->name);
        goto out;
    }
    if (disk_read_path(models_script_for(m->path), &d, err, sizeof(err)) < 0) {
        respond_errno(req, -EIO, err);
        goto out;
    }
    if (want == NULL) {
        for (char **w = m->flags; w && *w; w++)
            put_word(&b, *w);
        http_respond_json(req, 200,
                          json_pack("{s:s, s:s, s:s, s:s}", "model", m->name, "source", "script",
                                    "path", d.path, "args", buf_cstr(&b)));
        goto out;
    }
    if (!args_words(req, want, &words, m->name))
        goto out;
    buf_printf(&b,
               "#!/bin/sh\n# llama-server arguments for %s, from Goinfer's admin API; Goinfer\n"
               "# adds the model file, host, port and alias itself.\nexec llama-server",
               m->name);
    for (char **w = words; *w; w++) {
        buf_append(&b, " ", 1);
        proc_argv_quote(&b, *w);
    }
    buf_printf(&b, " \"$@\"\n");
    commit(req, ops, &d, strrchr(d.path, '/') ? strrchr(d.path, '/') + 1 : d.path, buf_cstr(&b),
           b.len, json_pack("{s:s, s:s}", "model", m->name, "args", want), "model.args", m->name);
out:
    strv_free(named);
    proc_argv_free(words);
    buf_cleanup(&b);
    disk_cleanup(&d);
}

void
admin_model_args(struct http_request *req, const struct admin_settings_ops *ops,
                 const struct catalog *cat)
{
    const char *id = req->path + strlen("/api/models/"), *end = strrchr(id, '/');
    const struct model_def *m = end ? catalog_find(cat, id, (size_t)(end - id)) : NULL;
    json_t *body = NULL;
    const char *want = NULL;

    if (end == NULL || strcmp(end, "/args") != 0) {
        http_respond_error(req, 404, "not_found", "no endpoint %s %s (try /api/models/<id>/args)",
                           req->method_name, req->path);
        return;
    }
    if (m == NULL) {
        http_respond_error(req, 404, "model_not_found", "no model %.*s", (int)(end - id), id);
        return;
    }
    if (strcmp(req->method_name, "PUT") == 0) {
        body = body_json(req);
        if (body == NULL)
            return;
        if (json_unpack(body, "{s:s}", "args", &want) != 0) {
            http_respond_error(req, 400, "invalid_request_error", "expected {\"args\": \"...\"}");
            json_decref(body);
            return;
        }
    }
    if (m->path != NULL && m->cmd == NULL)
        args_of_script(req, ops, m, want);
    else
        args_of_cmd(req, ops, m, want);
    json_decref(body);
}
