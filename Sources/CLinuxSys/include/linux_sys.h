/* Linux calls that Swift's Glibc module does not expose (they need _GNU_SOURCE). */
#ifndef LIFEBOAT_LINUX_SYS_H
#define LIFEBOAT_LINUX_SYS_H

/* syncfs(2): flush every dirty page and inode of the filesystem holding fd; 0 or -1 with errno. */
int lifeboat_syncfs(int fd);

#endif
