/*
 * Doubly linked lists threaded through each element's own `prev` and `next` fields, with a
 * pointer to the first element as the head: push and unlink written once, not in each file.
 * Walk them with plain `for (e = head; e != NULL; e = e->next)`; take `next` first when the
 * loop may unlink `e`.
 */
#ifndef GOINFER_CORE_LIST_H
#define GOINFER_CORE_LIST_H

#include <stddef.h>

/* Puts e first in the list whose head is the lvalue head. */
#define DLIST_PUSH(head, e)                                                                        \
    do {                                                                                           \
        (e)->prev = NULL;                                                                          \
        (e)->next = (head);                                                                        \
        if ((head) != NULL)                                                                        \
            (head)->prev = (e);                                                                    \
        (head) = (e);                                                                              \
    } while (0)

/* Takes e out of the list whose head is the lvalue head; e's links are cleared. */
#define DLIST_UNLINK(head, e)                                                                      \
    do {                                                                                           \
        if ((e)->prev != NULL)                                                                     \
            (e)->prev->next = (e)->next;                                                           \
        else                                                                                       \
            (head) = (e)->next;                                                                    \
        if ((e)->next != NULL)                                                                     \
            (e)->next->prev = (e)->prev;                                                           \
        (e)->prev = (e)->next = NULL;                                                              \
    } while (0)

#endif
