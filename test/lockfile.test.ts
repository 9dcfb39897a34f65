import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';

interface LockEntry {
  optionalDependencies?: Record<string, string>;
  os?: string[];
  cpu?: string[];
}

/**
 * The optional dependencies npm would add to `lock` on some platform: those a package lists that the lock
 * has no entry for. npm resolves a package from the folder that needs it upwards (`a/node_modules/b`, then
 * `node_modules/b`), so that is where an entry may be.
 */
function missingOptionals(lock: { packages: Record<string, LockEntry> }): string[] {
  const missing: string[] = [];
  for (const [path, entry] of Object.entries(lock.packages)) {
    for (const name of Object.keys(entry.optionalDependencies ?? {})) {
      const candidates: string[] = [];
      let folder = path;
      for (;;) {
        candidates.push(`${folder ? `${folder}/` : ''}node_modules/${name}`);
        if (!folder) break;
        const at = folder.lastIndexOf('node_modules/');
        folder = at <= 0 ? '' : folder.slice(0, at - 1);
      }
      if (!candidates.some((candidate) => candidate in lock.packages))
        missing.push(`${path || '.'} → ${name}`);
    }
  }
  return missing;
}

describe('package-lock.json', () => {
  it('lists every optional platform package, so `npm install` on any platform leaves it unchanged', () => {
    const lock = JSON.parse(readFileSync(new URL('../package-lock.json', import.meta.url), 'utf8'));
    assert.deepEqual(missingOptionals(lock), []);
  });

  it('finds an optional package the lock lacks', () => {
    const lock = {
      packages: {
        '': {},
        'node_modules/tool': { optionalDependencies: { 'tool-linux': '1', 'tool-darwin': '1' } },
        'node_modules/tool-linux': { os: ['linux'] },
      },
    };
    assert.deepEqual(missingOptionals(lock), ['node_modules/tool → tool-darwin']);
  });
});
