/* The child side of starting a container process, and the messages it exchanges with the agent
 * over a SOCK_SEQPACKET control socket:
 *
 *   child → agent  PTY   (with the pty master as SCM_RIGHTS) when the process has a terminal
 *   child → agent  READY the container's init has its namespaces and rootfs; it waits for START
 *   agent → child  START execute the command (the init only; an exec runs at once)
 *   child → agent  ERROR {errno, message} and the child exits
 *   end of file    the control socket is close-on-exec: EOF means execve succeeded
 *
 * The agent forks the container's init into a new pid namespace (it unshare()s its own
 * pid_for_children around the fork) and the init makes its mount, uts and ipc namespaces; an
 * exec is forked into the container's pid namespace (setns() around the fork) and joins the rest
 * itself. Nothing here blocks the agent: it only reads the socket
 * when epoll says so. */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include "spec.h"

typedef enum spawn_msg_type {
        SPAWN_MSG_READY = 1,
        SPAWN_MSG_PTY = 2,
        SPAWN_MSG_ERROR = 3,
        SPAWN_MSG_START = 4,
} spawn_msg_type_t;

typedef struct spawn_msg {
        int32_t type;
        int32_t error; /* positive errno with SPAWN_MSG_ERROR */
        char text[248];
} spawn_msg_t;

typedef struct spawn_request {
        const container_spec_t *container; /* the init: build this rootfs; NULL for an exec */
        const process_spec_t *process;
        int control_fd;
        int stdio_fds[3];   /* the process's stdin, stdout, stderr; -1 with a terminal */
        pid_t join_pid;     /* an exec: the init whose ipc, uts and mount namespaces to join */
        const char *cgroup; /* an exec: the cgroup directory to join; NULL without cgroups */
} spawn_request_t;

/* Runs in the new child; never returns (execve, or _exit after sending ERROR). */
_Noreturn void spawn_child(const spawn_request_t *req);
/* Agent side: reads one message; returns 1 with a message (and *ret_fd the passed fd or -1),
 * 0 at end of file, or a negative errno (-EAGAIN when nothing is there). */
int spawn_read(int fd, spawn_msg_t *ret, int *ret_fd);
/* Agent side: tells a waiting init to execute. */
int spawn_send_start(int fd);
