/**
 * libvips' process-wide knobs, which sharp exposes as globals: threads per pipeline and the operation
 * cache. Applied by imageLibrary (lazy.ts) whenever the library is handed settings.
 *
 * Threads: sharp runs each pipeline on one libuv worker and libvips spreads it over its own threads.
 * On glibc without jemalloc sharp picks 1, because every thread gets its own malloc arena and glibc
 * keeps what they have freed (RSS stays high after a burst); with jemalloc, or MALLOC_ARENA_MAX set
 * (bin/conveyor sets it), it picks the number of CPUs. Conveyor's default is 1 either way: the memory
 * budget lets several pipelines run side by side, which keeps the CPUs busy; the memory estimates
 * are measured with one thread; and with MALLOC_ARENA_MAX=2 alone (without the launcher's fixed mmap
 * threshold), two threads per pipeline made the seven-bomb benchmark peak 165 MB higher and settle
 * 225 MB higher (docs/benchmarks.md, "Hostile images").
 *
 * The operation cache keeps recent libvips operations and their results to answer a repeat of the
 * same call. Conveyor's inputs are Buffers that are new for every call (a read blob, a pooled source
 * buffer, a variant's intermediate), and libvips matches a buffer input by identity, so there are no
 * repeats to answer: the cache only holds entries (13 per transform, never reused), which is why its
 * default size here is zero. (Its memory is small next to a decode: with sharp's default of 50 MiB
 * and 100 items the benchmark's RSS was the same.)
 */
import sharp from 'sharp';

export interface ImageRuntime {
  /** libvips threads per pipeline; 0 leaves sharp's own choice (see above). */
  threads: number;
  cache: { memoryBytes: number; files: number; items: number };
}

/** sharp's choice, as it was when the library loaded. */
const DEFAULT_THREADS = sharp.concurrency();
let applied: string | undefined;

export function configureRuntime(runtime: ImageRuntime): void {
  const key = JSON.stringify(runtime);
  if (key === applied) return;
  applied = key;
  sharp.concurrency(runtime.threads > 0 ? runtime.threads : DEFAULT_THREADS);
  // sharp takes the cache's memory in whole MiB.
  sharp.cache({
    memory: Math.floor(runtime.cache.memoryBytes / (1024 * 1024)),
    files: runtime.cache.files,
    items: runtime.cache.items,
  });
}
