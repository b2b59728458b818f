/*
 * The control stream's protocol, both ends of it: NDJSON lines, a GPU machine's registration
 * and load going up, the server's drain and reconnect-after coming down. Parsed without I/O
 * (tests/fuzz/fuzz_register.c drives the parser), bounded whatever a peer sends.
 */
#ifndef GOINFER_TUNNEL_CONTROL_H
#define GOINFER_TUNNEL_CONTROL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TUNNEL_MAX_MODELS   10000 /* models one registration may carry */
#define TUNNEL_MODEL_ID_MAX 256   /* bytes in one model name */

struct tunnel_model {
    char *id;
    bool hot;         /* loaded now: no start-up delay */
    bool vision;      /* has a projector for images */
    json_t *progress; /* the server's: while it loads, what it last said of it, else NULL */
};

enum tunnel_msg_type {
    TUNNEL_MSG_INVALID,  /* not a JSON object with a string "type" */
    TUNNEL_MSG_OTHER,    /* a type this version does not know: ignored */
    TUNNEL_MSG_REGISTER, /* what it serves */
    TUNNEL_MSG_LOAD,     /* its busy slots */
    TUNNEL_MSG_DRAINING, /* it takes no new requests */
    TUNNEL_MSG_MODEL,    /* one of its models loads (with progress), or stopped loading */
    /* down, from the server */
    TUNNEL_MSG_DRAIN,           /* leave once your requests are done */
    TUNNEL_MSG_RECONNECT_AFTER, /* come back in ms */
};

struct tunnel_msg {
    enum tunnel_msg_type type;
    unsigned busy;  /* load */
    uint64_t ms;    /* reconnect-after */
    unsigned slots; /* register, from here on */
    bool admin;     /* its owner lets servers load and unload its models (client.allow_admin) */
    char version[64];
    struct tunnel_model *models; /* distinct valid names, in the order sent */
    size_t n_models;
    json_t *index;        /* name -> its position in models */
    size_t over, bad_id;  /* left out: past TUNNEL_MAX_MODELS; empty, too long, control chars */
    char *model;          /* model: its valid name, or NULL */
    bool loading, loaded; /* model: "status":"loading", "loaded" (else unloaded) */
    json_t *progress;     /* model: a bounded copy of llama.cpp's progress object, or NULL */
};

/* Up: {"type":"register","version":"...","slots":N,"models":[{"id","hot","vision"}]},
 * {"type":"load","busy":N}, {"type":"draining"}, {"type":"model","model":id,"status":"loading|
 * loaded|unloaded","progress":{"stages":[...],"current":...,"value":0.5}}; down: {"type":"drain"},
 * {"type":"reconnect-after","ms":N}. Fills m whatever the line holds. */
void tunnel_msg_parse(struct tunnel_msg *m, const char *line, size_t len);
void tunnel_msg_cleanup(struct tunnel_msg *m);

/* The lines each end writes (NUL-terminated, no newline); snprintf's return. */
int tunnel_line_load(char *out, size_t size, unsigned busy, unsigned slots);
int tunnel_line_goodbye(char *out, size_t size, uint64_t back_in_ms); /* reconnect-after, drain */
/* {"type":"model",...}: status "loading" (progress may be NULL), "loaded" or "unloaded"; a new
 * string. */
char *tunnel_line_model(const char *model, const char *status, json_t *progress);

#endif
