// The last frame of a stack must be a blocking function the runtime wraps.
// RUN: printf 'mcr-quiescence 1\nprogram srv\nclass main\nqp main > serve > epoll_wait\nqp main > serve > my_wait\n' > %t.qp
// RUN: not %mcr-clang --mcr-quiescence=%t.qp -c %s -o %t.o 2>&1 | FileCheck %s
// CHECK: mcr-clang: error: {{.*}}.qp:5: 'my_wait' is not a blocking function mcr can park in; the last frame must be one of: epoll_wait, epoll_pwait, poll, ppoll, select, pselect, accept, accept4, read, recv, recvfrom, recvmsg, pthread_cond_wait, pthread_cond_timedwait, sem_wait, sem_timedwait, nanosleep, clock_nanosleep, usleep, sleep, sigsuspend, sigwait, sigwaitinfo, sigtimedwait, pause
// CHECK-NOT: {{.}}
int x;
