/* Runs Goinfer's model discovery once over the given roots and prints what it found:
 * timed from bench/discovery_bench.sh against `find -name '*.gguf'`. */
#include <stdio.h>

#include "models/discovery.h"

int
main(int argc, char **argv)
{
    struct model_list l;
    char err[512];

    if (argc != 2) {
        fprintf(stderr, "usage: discovery_bench ROOTS\n");
        return 2;
    }
    if (models_discover(argv[1], &l, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("%zu models\n", l.n);
    model_list_cleanup(&l);
    return 0;
}
