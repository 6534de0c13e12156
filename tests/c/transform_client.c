/*
 * A transform client written the way the course's students write it:
 * getopt for the options, getaddrinfo + connect, send every request, then
 * read every response. Used by tests/transform_c_client.rs against both of
 * onepoll's action tables.
 *
 *   transform_client [-h HOST] [-p PORT] [-t 2021|2023] ACTION MESSAGE...
 *
 * Each ACTION MESSAGE pair is one request; ACTION is a name of the chosen
 * table (default 2023, the current labs) or a number. "@N" as MESSAGE is N
 * bytes of text. Each response is printed on its own line.
 */
#define _POSIX_C_SOURCE 200809L
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>
#include <arpa/inet.h>

static const char *names_2021[] = {"uppercase", "lowercase", "title-case", "reverse", "shuffle"};
static const char *names_2023[] = {"uppercase", "lowercase", "reverse", "shuffle", "random"};

static int action_code(const char *name, int table)
{
    const char **names = table == 2021 ? names_2021 : names_2023;
    for (int i = 0; i < 5; i++)
        if (strcmp(name, names[i]) == 0)
            return 1 << i;
    return atoi(name);
}

static int send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, 0);
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int recv_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *host = "localhost", *port = "8083";
    int table = 2023, opt;
    while ((opt = getopt(argc, argv, "h:p:t:")) != -1) {
        switch (opt) {
        case 'h': host = optarg; break;
        case 'p': port = optarg; break;
        case 't': table = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: %s [-h host] [-p port] [-t 2021|2023] ACTION MESSAGE...\n", argv[0]);
            return 2;
        }
    }
    if ((argc - optind) % 2 != 0 || argc == optind) {
        fprintf(stderr, "ACTION MESSAGE pairs expected\n");
        return 2;
    }

    struct addrinfo hints = {0}, *res;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &res) != 0) {
        fprintf(stderr, "cannot resolve %s\n", host);
        return 1;
    }
    int fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
    if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) < 0) {
        perror("connect");
        return 1;
    }
    freeaddrinfo(res);

    /* Send every request first... */
    int count = 0;
    for (int i = optind; i < argc; i += 2, count++) {
        uint32_t code = (uint32_t)action_code(argv[i], table);
        const char *msg = argv[i + 1];
        char *owned = NULL;
        size_t len = strlen(msg);
        if (msg[0] == '@') {
            len = (size_t)atol(msg + 1);
            owned = malloc(len + 1);
            for (size_t k = 0; k < len; k++)
                owned[k] = "the Quick bROWN fox "[k % 20];
            msg = owned;
        }
        uint32_t header = htonl(code << 27 | (uint32_t)len);
        if (send_all(fd, &header, 4) < 0 || send_all(fd, msg, len) < 0) {
            perror("send");
            return 1;
        }
        free(owned);
    }

    /* ...then read every response. */
    for (int i = 0; i < count; i++) {
        uint32_t header;
        if (recv_all(fd, &header, 4) < 0) {
            fprintf(stderr, "connection closed before response %d\n", i);
            return 1;
        }
        uint32_t len = ntohl(header);
        char *data = malloc(len + 1);
        if (data == NULL || recv_all(fd, data, len) < 0) {
            fprintf(stderr, "short response %d\n", i);
            return 1;
        }
        fwrite(data, 1, len, stdout);
        putchar('\n');
        free(data);
    }
    close(fd);
    return 0;
}
