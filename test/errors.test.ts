import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { catalog, errorTable, PROBLEM_CODES } from '../src/errors.ts';
import { Problem } from '../src/http/schemas.ts';

/** Every TypeScript source under src/ but the catalog itself, as text. */
async function sources(): Promise<string> {
  const root = new URL('../src/', import.meta.url).pathname;
  const files = (await readdir(root, { recursive: true })).filter(
    (f) => f.endsWith('.ts') && f !== 'errors.ts',
  );
  return (await Promise.all(files.map((f) => readFile(join(root, f), 'utf8')))).join('\n');
}

describe('the error catalog', () => {
  it('keeps the docs/api.md table in step with the catalog', async () => {
    const api = await readFile(new URL('../docs/api.md', import.meta.url), 'utf8');
    assert.ok(api.includes(errorTable()), 'docs/api.md table differs: regenerate with `conveyor errors`');
  });

  it('spells every code in snake_case, with a title and when it happens', () => {
    for (const [code, entry] of Object.entries(catalog)) {
      assert.match(code, /^[a-z]+(_[a-z]+)*$/, code);
      assert.ok(entry.title.length > 0 && entry.when.length > 0, code);
      assert.ok(entry.status === null || (entry.status >= 400 && entry.status < 600), code);
    }
  });

  it('lists only codes something raises', async () => {
    const text = await sources();
    for (const code of Object.keys(catalog)) assert.ok(text.includes(`'${code}'`), `${code} is never raised`);
  });

  it('documents the codes a problem document can carry in the OpenAPI schema', () => {
    const code = Problem.properties.code as unknown as { enum: string[] };
    assert.deepEqual(code.enum, PROBLEM_CODES);
    const codes: readonly string[] = PROBLEM_CODES;
    assert.ok(codes.includes('not_found') && !codes.includes('lease_expired'));
  });
});
