import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CacheTags, tagsOf } from '../../src/cdn/tags.ts';
import type { Representation } from '../../src/delivery/lookup.ts';
import { startConveyor, upload } from '../helpers/conveyor.ts';

const rep = (extra: Partial<Representation> = {}): Representation => ({
  kind: 'version',
  assetId: 'ast_1',
  tenantId: 'ten_1',
  sha256: 'a'.repeat(64),
  size: 1,
  contentType: 'image/png',
  filename: 'a.png',
  lastModified: new Date(0),
  visibility: 'public',
  ...extra,
});

describe('cache tags', () => {
  it('name the asset, the version, derived outputs and the tenant, most specific first', () => {
    assert.deepEqual(tagsOf(rep({ kind: 'latest' })), ['ast_1', 'ten_1']);
    assert.deepEqual(tagsOf(rep({ versionId: 'ver_1' })), ['ast_1', 'ver_1', 'ten_1']);
    assert.deepEqual(tagsOf(rep({ versionId: 'ver_1', derived: true })), [
      'ast_1',
      'ver_1',
      'ast_1-derived',
      'ten_1',
    ]);
  });

  it('go in every configured header once, joined by its separator, within its limit', () => {
    const tags = new CacheTags([
      { name: 'Cache-Tag', separator: ',', maxBytes: 16_384 },
      { name: 'xkey', separator: ' ', maxBytes: 8192 },
      // A second edge reading the same header with a stricter limit: the stricter one holds.
      { name: 'XKey', separator: ' ', maxBytes: 11 },
    ]);
    const r = rep({ versionId: 'ver_1' });
    assert.deepEqual(tags.headersFor(r), { 'cache-tag': 'ast_1,ver_1,ten_1', xkey: 'ast_1 ver_1' });
    assert.equal(tags.headersFor(r), tags.headersFor(r), 'made once per representation');
    assert.equal(new CacheTags([]).enabled, false);
  });

  it('are sent on public responses only, for the configured CDNs', async () => {
    const server = await startConveyor(undefined, {
      cdnProviders: JSON.stringify([
        { name: 'cf', kind: 'cloudflare', baseUrl: 'https://cdn.example.com', apiToken: 't', zoneId: 'z' },
        { name: 'b', kind: 'bunny', baseUrl: 'https://x.b-cdn.net', accessKey: 'k', pullZoneId: '1' },
      ]),
    });
    try {
      const pub = await upload(server, Buffer.from('public bytes'));
      const open = await fetch(`${server.url}/a/${pub.id}`);
      await open.arrayBuffer();
      assert.match(open.headers.get('cache-tag')!, new RegExp(`^${pub.id},ten_`));
      assert.equal(open.headers.get('cdn-tag'), open.headers.get('cache-tag'));
      const priv = await upload(server, Buffer.from('private bytes'), { visibility: 'private' });
      const closed = await server.fetch(`/a/${priv.id}`);
      assert.equal(closed.status, 200, await closed.text());
      assert.match(closed.headers.get('cache-control')!, /private/);
      assert.equal(closed.headers.get('cache-tag'), null);
      assert.equal(closed.headers.get('cdn-tag'), null);
    } finally {
      await server.close();
    }
  });
});
