/* A target program for libwaysock_preload.so: calls each interposed function once, the way
 * libwayland does, and prints what it got back as `key value...` lines on stdout (the shim logs
 * on stderr). Built by tests/preload.rs at test time with gcc -O0 -U_FORTIFY_SOURCE, so every
 * call below goes through the PLT to the symbol named here (no __open_2 & co.).
 *
 * usage: hooks DIR WDIR   (DIR: the shim's WAYSOCK_PRELOAD_DIR, read-only; WDIR: writable) */
#define _GNU_SOURCE
#define _LARGEFILE64_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static socklen_t unix_addr(struct sockaddr_un *a, const char *dir, const char *name) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    snprintf(a->sun_path, sizeof a->sun_path, "%s/%s", dir, name);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(a->sun_path) + 1);
}

static void path(char *out, size_t n, const char *dir, const char *name) {
    snprintf(out, n, "%s/%s", dir, name);
}

/* `KEY ret=R errno=E link=TARGET flock=F cloexec=C` for an fd from an open call. */
static void report_open(const char *key, int fd, int err) {
    char proc[64], link[512] = "";
    int fl = -1, ce = -1;
    if (fd >= 0) {
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(proc, link, sizeof link - 1);
        link[n < 0 ? 0 : n] = 0;
        fl = flock(fd, LOCK_EX | LOCK_NB);
        ce = (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0;
    }
    printf("%s ret=%d errno=%d link=%s flock=%d cloexec=%d\n", key, fd, err, link, fl, ce);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: hooks DIR WDIR\n");
        return 2;
    }
    const char *dir = argv[1], *wdir = argv[2];
    char p[512];
    int fd, r, e;
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("uid %d\n", (int)geteuid());

    /* Lock files under DIR: anonymous memory, flock-able. */
    path(p, sizeof p, dir, "wayland-11.lock");
    fd = open64(p, O_CREAT | O_RDWR | O_CLOEXEC, 0640);
    report_open("open64", fd, errno);
    path(p, sizeof p, dir, "wayland-12.lock");
    errno = 0;
    fd = open(p, O_CREAT | O_RDWR, 0640);
    report_open("open", fd, errno);
    path(p, sizeof p, dir, "wayland-13.lock");
    errno = 0;
    fd = openat(AT_FDCWD, p, O_CREAT | O_RDWR | O_CLOEXEC, 0640);
    report_open("openat", fd, errno);
    path(p, sizeof p, dir, "wayland-14.lock");
    errno = 0;
    fd = openat64(AT_FDCWD, p, O_CREAT | O_RDWR | O_CLOEXEC, 0640);
    report_open("openat64", fd, errno);

    /* An unrelated path: a real file. */
    path(p, sizeof p, wdir, "plain");
    errno = 0;
    fd = open(p, O_CREAT | O_RDWR | O_CLOEXEC, 0640);
    report_open("open-other", fd, errno);

    /* The display socket under DIR: abstract wayland-UID-5. */
    struct sockaddr_un a, got;
    socklen_t alen = unix_addr(&a, dir, "wayland-5"), glen = sizeof got;
    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    errno = 0;
    r = bind(l, (struct sockaddr *)&a, alen);
    e = errno;
    printf("bind fd=%d ret=%d errno=%d\n", l, r, e);
    memset(&got, 0, sizeof got);
    getsockname(l, (struct sockaddr *)&got, &glen);
    int name_len = (int)glen - (int)offsetof(struct sockaddr_un, sun_path) - 1;
    printf("bind-name abstract=%d name=%.*s\n", got.sun_path[0] == 0,
           name_len > 0 ? name_len : 0, got.sun_path + 1);
    printf("listen ret=%d\n", listen(l, 8));

    int l2 = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    errno = 0;
    r = bind(l2, (struct sockaddr *)&a, alen);
    e = errno;
    printf("bind2 fd=%d ret=%d errno=%d\n", l2, r, e);

    int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    errno = 0;
    r = connect(c, (struct sockaddr *)&a, alen);
    e = errno;
    printf("connect fd=%d ret=%d errno=%d\n", c, r, e);
    int c2 = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    errno = 0;
    r = connect(c2, (struct sockaddr *)&a, alen);
    e = errno;
    printf("connect2 fd=%d ret=%d errno=%d\n", c2, r, e);

    errno = 0;
    int s = accept(l, NULL, NULL);
    e = errno;
    printf("accept listener=%d ret=%d errno=%d\n", l, s, e);
    errno = 0;
    int s2 = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    e = errno;
    printf("accept4 listener=%d ret=%d errno=%d\n", l, s2, e);
    /* The data path is untouched: bytes flow both ways. */
    char buf[8] = "";
    r = (int)write(c, "ping", 4) == 4 && read(s, buf, sizeof buf) == 4 && memcmp(buf, "ping", 4) == 0;
    printf("data ok=%d\n", r);

    /* unlink: a mapped name is a no-op, anything else is really removed. */
    path(p, sizeof p, dir, "wayland-5");
    errno = 0;
    r = unlink(p);
    e = errno;
    printf("unlink-mapped ret=%d errno=%d\n", r, e);
    path(p, sizeof p, wdir, "plain");
    errno = 0;
    r = unlink(p);
    e = errno;
    printf("unlink-other ret=%d errno=%d exists_after=%d\n", r, e, access(p, F_OK) == 0);

    /* bind outside DIR: a real socket file. */
    struct sockaddr_un o;
    socklen_t olen = unix_addr(&o, wdir, "sock");
    int os = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    errno = 0;
    r = bind(os, (struct sockaddr *)&o, olen);
    e = errno;
    struct stat st;
    int is_sock = stat(o.sun_path, &st) == 0 && S_ISSOCK(st.st_mode);
    printf("bind-other ret=%d errno=%d socket_file=%d\n", r, e, is_sock);

    /* The mapped listener's fd number reused for an unrelated (TCP) listener: its peers are
     * not filtered any more. */
    close(s);
    close(s2);
    close(c);
    close(c2);
    close(l);
    int t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (t != l) {
        dup2(t, l);
        close(t);
    }
    struct sockaddr_in in;
    socklen_t inlen = sizeof in;
    memset(&in, 0, sizeof in);
    in.sin_family = AF_INET;
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    r = bind(l, (struct sockaddr *)&in, sizeof in);
    int lr = listen(l, 8);
    getsockname(l, (struct sockaddr *)&in, &inlen);
    int tc = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int cr = connect(tc, (struct sockaddr *)&in, sizeof in);
    errno = 0;
    int ts = accept(l, NULL, NULL);
    e = errno;
    printf("reuse fd=%d bind=%d listen=%d connect=%d accept=%d errno=%d\n", l, r, lr, cr,
           ts >= 0 ? 0 : -1, e);
    return 0;
}
