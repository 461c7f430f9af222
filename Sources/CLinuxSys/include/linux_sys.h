/* Linux and glibc calls that Swift's Glibc module does not expose. */
#ifndef LIFEBOAT_LINUX_SYS_H
#define LIFEBOAT_LINUX_SYS_H

/* sync_file_range(2) with SYNC_FILE_RANGE_WRITE: start writing back a range without waiting. */
int lifeboat_start_writeback(int fd, long long offset, long long length);

/* mallopt(3): serve allocations below mmap_threshold bytes from the heap, and return freed heap
   memory to the system only above trim_threshold bytes, with at most arena_max arenas. 1 on success. */
int lifeboat_tune_malloc(int mmap_threshold, int trim_threshold, int arena_max);

/* statfs(2): 1 if path is on tmpfs (memory-backed), 0 if not, -1 on error. */
int lifeboat_is_tmpfs(const char *path);

/* malloc_trim(3) with pad 0: hand every free page of every arena back to the system (the holes
   freed buffers leave between live allocations too, not only the top of the heap). */
int lifeboat_release_free_memory(void);

#endif
