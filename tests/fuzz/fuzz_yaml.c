/* libFuzzer target: the whole configuration loader (goinfer.yml with the llama-swap section,
 * macros, groups, limits) on arbitrary bytes, through a memfd so the real file path is used. */
#include <sys/mman.h>

#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "conf/conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64], err[1024];
    char *argv[] = {"goinfer", "-config", path, NULL};
    struct conf c;
    int fd = memfd_create("goinfer.yml", MFD_CLOEXEC);

    if (fd < 0)
        return 0;
    if (write(fd, data, size) == (ssize_t)size) {
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        conf_load(&c, 3, argv, err, sizeof(err));
        conf_cleanup(&c);
    }
    close(fd);
    return 0;
}
