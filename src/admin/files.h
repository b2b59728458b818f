/*
 * The admin API's model files: list them (GET /api/files) and delete them (DELETE
 * /api/files/<name>), and what uploads and downloads share: where files may go, which names
 * are allowed, and jobs that run their disk work on libuv's thread pool, never on the loop.
 *
 * Confinement: a file is always reached as a folder opened from a models_dir root, then names
 * inside it, each opened with O_NOFOLLOW, so no symlink leads out of the model folders.
 */
#ifndef GOINFER_ADMIN_FILES_H
#define GOINFER_ADMIN_FILES_H

#include <sys/types.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "conf/conf.h"
#include "http/server.h"
#include "models/catalog.h"
#include "swap/swap.h"

/* What the files API works with. The router keeps one and refreshes it at every reload;
 * borrowed pointers belong to the generation in force, so a job copies what it keeps. */
struct admin_files_env {
    uv_loop_t *loop;
    const char *models_dir; /* ':'-separated roots; the first takes uploads and downloads */
    const struct conf_admin *admin;
    uint64_t chunk_max; /* limits.body_bytes: one upload chunk */
    const struct catalog *cat;
    struct swap *swap;
    void (*reload)(void *arg, const char *why); /* the catalog is rescanned by a reload */
    void *reload_arg;
};

/* The name of a model file as uploads and downloads take it: 1 to 255 bytes, no '/', no NUL
 * or control byte, no leading '.', no "..", ending in ".gguf"; a split part as
 * <stem>-0000N-of-0000M.gguf with 1 <= N <= M. Returns 0, or -EINVAL with err filled. Pure. */
int admin_file_name_check(const char *name, size_t len, char *err, size_t errlen);
/* For a split part's name: its part number and count (1-based), else 0 for both. Pure. */
void admin_file_split(const char *name, unsigned *no, unsigned *count);
/* The root folder new files go to (the first of models_dir), copied into out. -ENOENT when
 * none is configured. */
int admin_files_target(const struct admin_files_env *e, char *out, size_t size);

/* The roots of models_dir, a NULL-terminated strv (free with strv_free); NULL when none. */
char **admin_files_roots(const char *models_dir);

/* ---- jobs: disk work on the thread pool for one request ---- */

struct admin_job;
typedef void (*admin_job_cb)(struct admin_job *j);

struct admin_job {
    uv_work_t work;
    struct http_request *req; /* NULL once the client left: nothing to answer then */
    admin_job_cb run;         /* on the thread pool: no loop, no request */
    admin_job_cb done;        /* on the loop: answers j->req when it is still there */
    void *data;
};

/* Runs j->run on the pool, then j->done on the loop, then frees j (data is the callbacks').
 * The request is attached so a client that leaves only clears j->req. */
void admin_job_start(uv_loop_t *loop, struct http_request *req, admin_job_cb run, admin_job_cb done,
                     void *data);

/* Writes the audit line of a refused action, then answers the error (the request may be gone
 * once answered, so the audit comes first). */
void admin_refuse(struct http_request *req, const char *action, const char *target, int status,
                  const char *type, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* ---- handlers ---- */

struct admin_uploads;
struct admin_downloads;

/* GET /api/files: every model file (folder, name, size, mtime, the models that use it and
 * whether they run), each folder's free space, the uploads and downloads in progress. */
void admin_files_list(struct http_request *req, const struct admin_files_env *e,
                      struct admin_uploads *up, struct admin_downloads *down);
/* DELETE /api/files/<name>[?force=1]: the file (a split model's parts together), refused with
 * 409 while a model that uses it runs unless forced (it is unloaded first). */
void admin_files_delete(struct http_request *req, const struct admin_files_env *e);

#endif
