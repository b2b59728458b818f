/* -write: generates goinfer.yml (with a fresh API key) and llama-swap.yml from discovery. */
#ifndef GOINFER_APP_WRITE_H
#define GOINFER_APP_WRITE_H

#include <stddef.h>

#include "conf/conf.h"
#include "models/discovery.h"

/* Writes dir/goinfer.yml (mode 0600) and dir/llama-swap.yml, keeping any previous file as
 * <name>.bak. Returns 0 or -errno with err filled. */
int conf_write_files(const struct conf *c, const struct model_list *found, const char *exe,
                     const char *dir, char *err, size_t errlen);
/* 64 hex digits from the OS's random generator. Returns 0 or -EIO. */
int conf_random_key(char out[65]);

#endif
