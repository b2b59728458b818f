/*
 * The YAML handlers of the config sections that have a file of their own (the llama-swap
 * model section, the tunnel's server: and client:). Private to conf/: only the directive tables
 * of conf.c and the sections' own files see libyaml; the rest of the program reads plain
 * structs (conf.h, swapconf.h, tunnelconf.h) that do not include <yaml.h>.
 */
#ifndef GOINFER_CONF_SECTIONS_H
#define GOINFER_CONF_SECTIONS_H

#include "conf/yaml.h"

int swapconf_set_macros(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj);
int swapconf_set_models(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj);
int swapconf_set_groups(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj);
int swapconf_set_routing(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj);
int swapconf_set_api_keys(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj);
int swapconf_set_peers(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj);
int swapconf_set_hooks(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj);
int tunnelconf_set_server(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj);
int tunnelconf_set_client(struct yctx *y, const yaml_node_t *n, const struct ykey *k, void *obj);

#endif
