/*
 * Guest RAM that outlives the process (live update, docs/live-update.md).
 *
 * The machine's RAM is a memfd mapped MAP_SHARED: every Unicorn engine maps
 * it with uc_mem_map_ptr, JavaScript sees it through an external ArrayBuffer,
 * and a second process that inherits the descriptor maps the same pages.
 * Node cannot create or map such memory itself, hence these few calls.
 * Errors come back as -errno so the caller can name them.
 */
#define _GNU_SOURCE /* memfd_create */
#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* A new anonymous shared-memory file of `size` bytes (zero-filled): its fd, or -errno. */
int fm_shm_create(const char *name, uint64_t size) {
  int fd = memfd_create(name, MFD_CLOEXEC);
  if (fd < 0) return -errno;
  if (ftruncate(fd, (off_t)size) != 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  return fd;
}

/* Maps `size` bytes of `fd` read-write and shared; writes *err = errno on failure and returns NULL. */
void *fm_shm_map(int fd, uint64_t size, int *err) {
  void *p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    *err = errno;
    return NULL;
  }
  *err = 0;
  return p;
}

int fm_shm_unmap(void *p, uint64_t size) {
  return munmap(p, (size_t)size) == 0 ? 0 : -errno;
}

/* out[0] = inode, out[1] = size in bytes, out[2] = device. 0 or -errno. */
int fm_shm_stat(int fd, uint64_t *out) {
  struct stat st;
  if (fstat(fd, &st) != 0) return -errno;
  out[0] = (uint64_t)st.st_ino;
  out[1] = (uint64_t)st.st_size;
  out[2] = (uint64_t)st.st_dev;
  return 0;
}

int fm_shm_close(int fd) {
  return close(fd) == 0 ? 0 : -errno;
}
