/* Per-address accounting: one entry per address while connections hold it, counts exact. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "http/addrtab.h"

static void
one_entry_per_address_while_held(void **state)
{
    struct addrtab *t = addrtab_new();
    struct addr_entry *a1 = addrtab_get(t, "10.0.0.1"), *a2 = addrtab_get(t, "10.0.0.1");
    struct addr_entry *b = addrtab_get(t, "::1"), *again;

    (void)state;
    assert_ptr_equal(a1, a2);
    assert_ptr_not_equal(a1, b);
    assert_int_equal(a1->conns, 2);
    a1->body_bytes = 100;
    addrtab_put(t, a1);
    again = addrtab_get(t, "10.0.0.1");
    assert_ptr_equal(again, a2); /* still held once: the same entry, its bytes kept */
    assert_int_equal(again->body_bytes, 100);
    addrtab_put(t, again);
    addrtab_put(t, a2);
    addrtab_put(t, b);
    addrtab_put(t, NULL); /* a connection that never got an address */
    addrtab_free(t);
}

/* Many addresses, many in one bucket's chain: each found again, each freed with its last. */
static void
many_addresses(void **state)
{
    struct addrtab *t = addrtab_new();
    struct addr_entry *e[20000];
    char ip[48];

    (void)state;
    for (int i = 0; i < 20000; i++) {
        snprintf(ip, sizeof(ip), "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        e[i] = addrtab_get(t, ip);
        assert_string_equal(e[i]->ip, ip);
    }
    for (int i = 0; i < 20000; i += 7) {
        snprintf(ip, sizeof(ip), "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        assert_ptr_equal(addrtab_get(t, ip), e[i]);
        addrtab_put(t, e[i]);
    }
    for (int i = 0; i < 20000; i++)
        addrtab_put(t, e[i]);
    addrtab_free(t);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(one_entry_per_address_while_held),
        cmocka_unit_test(many_addresses),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
