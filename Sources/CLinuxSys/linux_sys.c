/* Thin wrappers for Linux calls hidden behind _GNU_SOURCE in glibc's headers. */
#define _GNU_SOURCE
#include <unistd.h>
#include "linux_sys.h"

int lifeboat_syncfs(int fd) { return syncfs(fd); }
