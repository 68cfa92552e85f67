#ifndef MCR_CLASSMATCH_H
#define MCR_CLASSMATCH_H
/*
 * classmatch.h - which new thread class an old one is, across versions.
 *
 * A thread class is its creation stack's function names and its start routine
 * (threads.h): "main > start_conn_timeout_thread (conn_timeout_thread)". The
 * compiler inlines differently from one version to the next (memcached 1.6.38
 * inlines start_conn_timeout_thread into main, 1.6.18 does not), which drops a
 * frame from the stack, or adds one. So a class with no equal name in the other
 * version is the one class there with the same start routine whose stack is its
 * own with frames dropped or added.
 */
#include <stddef.h>

/* Whether old and new name the same class modulo inlining: the same start
 * routine (or both none: the main thread), and one stack's frames a
 * subsequence of the other's. */
int mcr_class_like(const char *old, const char *new_);

/* Which of the nnew names in news old is: the equal one, else the only one like
 * it (mcr_class_like) among those equal to none of the nold names in olds (the
 * old version's classes: such a one is theirs); -1 when none is, or more than
 * one is alike. */
long mcr_class_pick(const char *old, const char *const *olds, size_t nold,
                    const char *const *news, size_t nnew);

#endif /* MCR_CLASSMATCH_H */
