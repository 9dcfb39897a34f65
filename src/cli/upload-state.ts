import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

/** What an unfinished resumable upload is remembered by: the same file, unchanged, to the same server. */
export interface UploadKey {
  /** The server's uploads endpoint, e.g. `http://localhost:8080/api/v1/uploads`. */
  endpoint: string;
  /** The file's absolute path. */
  path: string;
  size: number;
  mtimeMs: number;
  visibility: string;
}

export interface RememberedUpload extends UploadKey {
  /** The upload's URL, as the server made it at creation. */
  url: string;
  /** When the server forgets the upload (Upload-Expires), ms since the epoch; unknown if absent. */
  expiresAt?: number;
}

interface StateFile {
  uploads: RememberedUpload[];
}

/**
 * Where `conveyor upload` remembers its unfinished resumable uploads unless told otherwise: under the XDG
 * state folder ($XDG_STATE_HOME, by default ~/.local/state).
 */
export function defaultStateFile(env: NodeJS.ProcessEnv = process.env): string {
  const base = env['XDG_STATE_HOME'] || join(homedir(), '.local', 'state');
  return join(base, 'conveyor', 'uploads.json');
}

/**
 * The state file of unfinished resumable uploads: a small JSON document, rewritten whole (to a temporary
 * file, then renamed) on every change, so a reader never sees half of it. One upload is kept per file and
 * endpoint; those the server has expired are dropped on the next write. A missing or unreadable file
 * holds nothing: the worst that can happen is an upload that starts over.
 */
export class UploadState {
  readonly file: string;

  constructor(file: string) {
    this.file = file;
  }

  async find(key: UploadKey): Promise<RememberedUpload | undefined> {
    return (await this.#read()).uploads.find((entry) => sameUpload(entry, key));
  }

  async remember(key: UploadKey, url: string, expiresAt?: number): Promise<void> {
    const entry: RememberedUpload = { ...key, url, ...(expiresAt !== undefined ? { expiresAt } : {}) };
    await this.#update((uploads) => [
      ...uploads.filter((other) => other.endpoint !== key.endpoint || other.path !== key.path),
      entry,
    ]);
  }

  async forget(key: UploadKey): Promise<void> {
    await this.#update((uploads) => uploads.filter((entry) => !sameUpload(entry, key)));
  }

  async #update(change: (uploads: RememberedUpload[]) => RememberedUpload[]): Promise<void> {
    const now = Date.now();
    const uploads = change((await this.#read()).uploads).filter(
      (entry) => entry.expiresAt === undefined || entry.expiresAt > now,
    );
    const state: StateFile = { uploads };
    await mkdir(dirname(this.file), { recursive: true, mode: 0o700 });
    const temporary = `${this.file}.${process.pid}.tmp`;
    await writeFile(temporary, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
    await rename(temporary, this.file);
  }

  async #read(): Promise<StateFile> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { uploads: [] };
      throw error;
    }
    try {
      const state = JSON.parse(text) as Partial<StateFile>;
      return { uploads: Array.isArray(state.uploads) ? state.uploads.filter(isEntry) : [] };
    } catch {
      return { uploads: [] };
    }
  }
}

function sameUpload(a: UploadKey, b: UploadKey): boolean {
  return (
    a.endpoint === b.endpoint &&
    a.path === b.path &&
    a.size === b.size &&
    a.mtimeMs === b.mtimeMs &&
    a.visibility === b.visibility
  );
}

function isEntry(value: unknown): value is RememberedUpload {
  const entry = value as Partial<RememberedUpload> | null;
  return (
    typeof entry?.url === 'string' &&
    typeof entry.endpoint === 'string' &&
    typeof entry.path === 'string' &&
    typeof entry.size === 'number' &&
    typeof entry.mtimeMs === 'number' &&
    typeof entry.visibility === 'string'
  );
}
