/*
 * epoll-server.c - an echo server on one epoll loop, for mcr-profile's tests.
 * The loop waits in epoll_wait; accepting and echoing (a read that may block)
 * are handlers called from the loop.
 *   epoll-server READY-FILE: listens on 127.0.0.1, writes "PORT" to READY-FILE.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static void handle(int ep, int fd)
{
  char buf[256];
  ssize_t n = read(fd, buf, sizeof(buf));

  if (n <= 0) {
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    return;
  }
  if (write(fd, buf, (size_t)n) != n)
    close(fd);
}

static void accept_client(int ep, int lfd)
{
  int c = accept(lfd, NULL, NULL);
  struct epoll_event ev = {.events = EPOLLIN};

  if (c < 0)
    return;
  ev.data.fd = c;
  epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
}

static void serve(int ep, int lfd)
{
  struct epoll_event evs[16];

  for (;;) {
    int n = epoll_wait(ep, evs, 16, -1);
    for (int i = 0; i < n; i++) {
      if (evs[i].data.fd == lfd)
        accept_client(ep, lfd);
      else
        handle(ep, evs[i].data.fd);
    }
  }
}

static int listen_any(void)
{
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(a);
  int fd = socket(AF_INET, SOCK_STREAM, 0);

  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 16) ||
      getsockname(fd, (struct sockaddr *)&a, &len))
    return -1;
  return fd;
}

int main(int argc, char **argv)
{
  struct sockaddr_in a;
  socklen_t len = sizeof(a);
  struct epoll_event ev = {.events = EPOLLIN};
  int lfd = listen_any(), ep = epoll_create1(0);
  FILE *f;

  if (argc != 2 || lfd < 0 || ep < 0 || getsockname(lfd, (struct sockaddr *)&a, &len))
    return 1;
  ev.data.fd = lfd;
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  if (!(f = fopen(argv[1], "w")))
    return 1;
  fprintf(f, "%d\n", ntohs(a.sin_port));
  fclose(f);
  serve(ep, lfd);
  return 0;
}
