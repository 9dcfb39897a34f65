import { stat, statfs } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ConveyorError } from '../errors.ts';

/** What this installation keeps on local disk (S3 blobs and PostgreSQL have no local volume). */
export type VolumeName = 'blobs' | 'uploads' | 'database' | 'blob-cache';

export interface Volume {
  name: VolumeName;
  /** A folder (or file) of the volume; need not exist yet, its nearest existing parent is measured. */
  path: string;
}

/** One filesystem holding one or more volumes. */
export interface VolumeSpace {
  names: VolumeName[];
  /** Bytes an unprivileged writer can still use (statfs `bavail`). */
  freeBytes: number;
  totalBytes: number;
  /** Free space is under the reserve. */
  low: boolean;
}

interface Measured {
  device: number;
  freeBytes: number;
  totalBytes: number;
}

/**
 * Free space of the local filesystems Conveyor writes to, for health (`low`) and for refusing uploads that
 * cannot fit before a byte of them is written (`admit`).
 *
 * Below `minFreeBytes` a filesystem counts as low: health reports storage as degraded, and uploads to it
 * are refused, so that the last of the space stays for the database and for work already under way. Each
 * path is measured with statfs at most once per `ttlMs`, so neither a burst of uploads nor a health probe
 * per second turns into a system call per request; volumes on one filesystem (same device) count once.
 */
export class FreeSpace {
  readonly #volumes: readonly Volume[];
  readonly #minFreeBytes: number;
  readonly #ttlMs: number;
  readonly #now: () => number;
  readonly #measured = new Map<string, { expires: number; value: Promise<Measured | undefined> }>();

  constructor(
    volumes: readonly Volume[],
    options: { minFreeBytes: number; ttlMs: number; now?: () => number },
  ) {
    this.#volumes = volumes;
    this.#minFreeBytes = options.minFreeBytes;
    this.#ttlMs = options.ttlMs;
    this.#now = options.now ?? Date.now;
  }

  get minFreeBytes(): number {
    return this.#minFreeBytes;
  }

  /** Every filesystem holding a volume. A path that cannot be measured is left out. */
  async volumes(): Promise<VolumeSpace[]> {
    const byDevice = new Map<number, VolumeSpace>();
    for (const volume of this.#volumes) {
      const measured = await this.#measure(volume.path);
      if (!measured) continue;
      const known = byDevice.get(measured.device);
      if (known) {
        if (!known.names.includes(volume.name)) known.names.push(volume.name);
        continue;
      }
      byDevice.set(measured.device, {
        names: [volume.name],
        freeBytes: measured.freeBytes,
        totalBytes: measured.totalBytes,
        low: measured.freeBytes < this.#minFreeBytes,
      });
    }
    return [...byDevice.values()];
  }

  /** The filesystems under the reserve. */
  async low(): Promise<VolumeSpace[]> {
    return (await this.volumes()).filter((volume) => volume.low);
  }

  /**
   * Refuses with 507 (insufficient_storage) when writing `needs` (bytes by volume) would leave a filesystem
   * with less than the reserve. Needs on one filesystem add up (a resumable upload is stored once as the
   * upload and once more as the blob it becomes). Volumes this installation does not have (blobs on S3)
   * need nothing; an upload of unknown length needs 0 bytes, so it is refused only under the reserve.
   */
  async admit(needs: Partial<Record<VolumeName, number>>): Promise<void> {
    const byDevice = new Map<number, { free: number; bytes: number }>();
    for (const volume of this.#volumes) {
      const bytes = needs[volume.name];
      if (bytes === undefined) continue;
      const measured = await this.#measure(volume.path);
      if (!measured) continue;
      const entry = byDevice.get(measured.device) ?? { free: measured.freeBytes, bytes: 0 };
      entry.bytes += bytes;
      byDevice.set(measured.device, entry);
    }
    for (const { free, bytes } of byDevice.values()) {
      if (bytes > free - this.#minFreeBytes) {
        throw new ConveyorError(
          'insufficient_storage',
          bytes > 0
            ? `The server has too little free space for ${bytes} bytes; nothing was stored. Retry once space has been freed`
            : 'The server is low on free space and takes no uploads; retry once space has been freed',
        );
      }
    }
  }

  #measure(path: string): Promise<Measured | undefined> {
    const now = this.#now();
    const cached = this.#measured.get(path);
    if (cached && cached.expires > now) return cached.value;
    const value = measure(path).catch(() => undefined);
    this.#measured.set(path, { expires: now + this.#ttlMs, value });
    return value;
  }
}

/** statfs of `path`, or of its nearest existing parent (a folder made on first use, e.g. uploads/). */
async function measure(path: string): Promise<Measured> {
  for (let at = path; ; at = dirname(at)) {
    try {
      const [info, space] = await Promise.all([stat(at), statfs(at)]);
      return {
        device: info.dev,
        freeBytes: space.bavail * space.bsize,
        totalBytes: space.blocks * space.bsize,
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || dirname(at) === at) throw error;
    }
  }
}
