/*
 * llama.cpp's child protocol, the child's side of it as we read it: a llama-server started with
 * LLAMA_SERVER_ROUTER_PORT in its environment prints lines
 * cmd_child_to_router:state:{"state":"loading","payload":{"stages":[...],"current":...,
 * "value":0.5}} while it loads (one per 200 ms at most, the first and the last always), then
 * {"state":"ready",...}; it reads cmd_router_to_child:exit on its stdin once ready. Pure: bytes
 * in, a typed message out, so unit tests and fuzzers call it directly.
 */
#ifndef GOINFER_PROC_CHILDMSG_H
#define GOINFER_PROC_CHILDMSG_H

#include <stdbool.h>
#include <stddef.h>

#define PROC_CHILD_PREFIX   "cmd_child_to_router:state:"
#define PROC_CHILD_EXIT     "cmd_router_to_child:exit\n"
#define PROC_STAGES_MAX     4
#define PROC_STAGE_NAME_MAX 24 /* "mmproj_model" and its kin, with room to spare */

enum proc_child_state {
    PROC_CHILD_LOADING,
    PROC_CHILD_READY,
    PROC_CHILD_SLEEPING,
    PROC_CHILD_OTHER, /* downloading, or a state a newer llama-server adds */
};

/* A load's progress as llama.cpp reports it: the stages of the load in order, the one under
 * way (an index into stages, or -1 when it named none of them) and how far it is (0..1). */
struct proc_progress {
    char stages[PROC_STAGES_MAX][PROC_STAGE_NAME_MAX];
    size_t n_stages;
    int current;
    double value;
};

struct proc_child_msg {
    enum proc_child_state state;
    bool has_progress; /* loading, with a readable payload */
    struct proc_progress progress;
};

/* Parses one output line; returns 0 when it is a state line (prefix included), -EINVAL when it
 * is not one or cannot be read (stage names of letters, digits and '_' only; a value outside
 * 0..1 is clamped). */
int proc_child_msg_parse(const char *line, size_t len, struct proc_child_msg *out);

#endif
