/* Thin wrappers for Linux and glibc calls hidden from Swift's Glibc module. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <malloc.h>
#include <sys/vfs.h>
#include <unistd.h>
#include "linux_sys.h"

int lifeboat_start_writeback(int fd, long long offset, long long length) {
    return sync_file_range(fd, (off_t)offset, (off_t)length, SYNC_FILE_RANGE_WRITE);
}

int lifeboat_tune_malloc(int mmap_threshold, int trim_threshold, int arena_max) {
    return mallopt(M_MMAP_THRESHOLD, mmap_threshold) && mallopt(M_TRIM_THRESHOLD, trim_threshold)
        && mallopt(M_ARENA_MAX, arena_max);
}

int lifeboat_is_tmpfs(const char *path) {
    struct statfs fs;
    if (statfs(path, &fs) != 0) return -1;
    return fs.f_type == 0x01021994 ? 1 : 0; /* TMPFS_MAGIC */
}

int lifeboat_release_free_memory(void) {
    return malloc_trim(0);
}
