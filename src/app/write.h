/* -write: generates goinfer.yml (with a fresh API key) and llama-swap.yml from discovery. */
#ifndef GOINFER_APP_WRITE_H
#define GOINFER_APP_WRITE_H

#include <stddef.h>

#include "conf/conf.h"
#include "models/discovery.h"

/* The key goinfer -write -debug writes (the seed's "debug API key"): fixed and public, so a
 * development set-up and its scripts share it; the original Go Goinfer's value. Never for a
 * machine others reach: goinfer warns when it is the key in force. */
#define WRITE_DEBUG_API_KEY CONF_DEBUG_API_KEY
/* What a new goinfer.yml's llama.args hold, and the first ${PORT} of llama-swap.yml. */
#define WRITE_ARGS_COMMON  "--props --no-warmup"
#define WRITE_ARGS_GOINFER "--jinja"
#define WRITE_ARGS_DEBUG   "--verbosity 3"
#define WRITE_START_PORT   6000

/* Writes dir/goinfer.yml (mode 0600) and dir/llama-swap.yml, keeping any previous file as
 * <name>.bak: a fresh random key, the debug key with c->debug, a placeholder with
 * c->no_api_key. Returns 0 or -errno with err filled. */
int conf_write_files(const struct conf *c, const struct model_list *found, const char *exe,
                     const char *dir, char *err, size_t errlen);

#endif
