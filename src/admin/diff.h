/*
 * A unified diff of two texts, line by line, for the settings page ("what would this change")
 * and the answer to a save. Computed simply: common head and tail trimmed, then a longest common
 * subsequence over the lines left, bounded so a huge file costs a bounded answer. Pure.
 */
#ifndef GOINFER_ADMIN_DIFF_H
#define GOINFER_ADMIN_DIFF_H

#include <stddef.h>

/* Lines compared by the LCS at most (after trimming): past it, the middle is shown as all
 * removed then all added, still a correct diff. */
#define ADMIN_DIFF_MAX_CELLS (4u << 20)

/* "--- a_name\n+++ b_name\n@@ ... @@\n..." with 3 lines of context; "" when a and b are the same
 * text. The caller frees it. */
char *admin_diff(const char *a_name, const char *a, size_t alen, const char *b_name, const char *b,
                 size_t blen);

#endif
