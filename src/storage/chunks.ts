import { type FileHandle, open } from 'node:fs/promises';
import { Writable } from 'node:stream';

/**
 * Frees the memory behind `chunk` now instead of at V8's next garbage collection; afterwards `chunk` is
 * empty. Only for a chunk that nothing else references, and only a chunk that is the whole of its
 * ArrayBuffer is touched (a slice, such as one of Node's small pooled buffers, shares memory with others).
 *
 * Why: Node hands each socket read of a request body to JavaScript as a fresh buffer of up to 64 KiB,
 * allocated outside V8's heap. V8 notices such memory only when it has grown by 64 MB since its last
 * collection, so during a large upload up to 64 MB of already-written chunks sat in memory, a third of
 * the process's peak (docs/benchmarks.md, "Memory and the 1 GiB upload").
 */
export function releaseChunk(chunk: Uint8Array): void {
  const memory = chunk.buffer;
  if (!(memory instanceof ArrayBuffer) || chunk.byteOffset !== 0 || chunk.byteLength !== memory.byteLength)
    return;
  try {
    memory.transfer(0);
  } catch {
    // Not detachable (memory that Node or an addon pinned): the collector will free it as before.
  }
}

/**
 * Writes a stream into a new file (created exclusively: an existing file is an error), fsyncs it before
 * finishing, and hands each chunk to `release` once its bytes are in the file. The file is opened by the
 * stream itself, so that it can be piped into at once: an error of the source before then would have
 * had no listener.
 */
export class FileSink extends Writable {
  readonly #path: string;
  readonly #release: ((chunk: Buffer) => void) | undefined;
  #handle: FileHandle | undefined;

  constructor(path: string, release?: (chunk: Buffer) => void) {
    super({ highWaterMark: 256 * 1024 });
    this.#path = path;
    this.#release = release;
  }

  override _construct(callback: (error?: Error | null) => void): void {
    open(this.#path, 'wx').then((handle) => {
      this.#handle = handle;
      callback();
    }, callback);
  }

  override _writev(chunks: { chunk: Buffer }[], callback: (error?: Error | null) => void): void {
    const buffers = chunks.map((c) => c.chunk);
    writeAll(this.#handle!, buffers).then(() => {
      if (this.#release) for (const buffer of buffers) this.#release(buffer);
      callback();
    }, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#handle!.sync().then(() => callback(), callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const handle = this.#handle;
    this.#handle = undefined;
    if (!handle) {
      callback(error);
      return;
    }
    handle.close().then(
      () => callback(error),
      (closeError: Error) => callback(error ?? closeError),
    );
  }
}

/** `writev` until every byte is written: a regular file takes all at once, but the call may write less. */
async function writeAll(handle: FileHandle, buffers: Buffer[]): Promise<void> {
  let rest = buffers;
  while (rest.length > 0) {
    let { bytesWritten } = await handle.writev(rest);
    const next: Buffer[] = [];
    for (const buffer of rest) {
      if (bytesWritten >= buffer.length) bytesWritten -= buffer.length;
      else {
        next.push(bytesWritten > 0 ? buffer.subarray(bytesWritten) : buffer);
        bytesWritten = 0;
      }
    }
    rest = next;
  }
}
