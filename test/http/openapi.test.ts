import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
// openapi-typescript 6: version 7 builds its output with the TypeScript 5 compiler API, which the
// project's TypeScript 7 does not have.
import openapiTS, { type OpenAPI3 } from 'openapi-typescript';
import { startConveyor, type TestServer } from '../helpers/conveyor.ts';

const run = promisify(execFile);
const ROOT = new URL('../..', import.meta.url).pathname;
/** Inside the repository (and ignored by git), so that tsc finds node_modules from there. */
const SCRATCH = join(ROOT, '.tmp');

type Operation = {
  operationId?: string;
  tags?: string[];
  security?: unknown[];
  parameters?: { name: string; in: string; required?: boolean }[];
  requestBody?: { content: Record<string, { schema: any }> };
  responses: Record<string, Response>;
};
type Response = { headers?: Record<string, unknown>; content?: Record<string, { schema: any }> };
type Document = {
  servers?: { url: string }[];
  tags?: { name: string; description?: string }[];
  paths: Record<string, Record<string, Operation>>;
};

const METHODS = ['get', 'head', 'post', 'put', 'patch', 'delete', 'options'];

function operations(doc: Document): [string, string, Operation][] {
  return Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item)
      .filter(([method]) => METHODS.includes(method))
      .map(([method, operation]): [string, string, Operation] => [path, method, operation]),
  );
}

describe('the OpenAPI document', () => {
  let server: TestServer;
  let doc: Document;
  let dir: string;
  let file: string;
  before(async () => {
    server = await startConveyor();
    const res = await server.fetch('/api/v1/openapi.json', { key: null });
    assert.equal(res.status, 200);
    doc = (await res.json()) as Document;
    await mkdir(SCRATCH, { recursive: true });
    dir = await mkdtemp(join(SCRATCH, 'openapi-'));
    file = join(dir, 'openapi.json');
    await writeFile(file, JSON.stringify(doc, null, 2));
  });
  after(async () => {
    await server?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("lints clean with Redocly's recommended rules: no error, no warning", async () => {
    const cli = join(ROOT, 'node_modules/@redocly/cli/bin/cli.js');
    const env = { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' };
    const lint = await run(
      process.execPath,
      [cli, 'lint', '--extends', 'recommended', '--format', 'json', file],
      { env, maxBuffer: 64 * 1024 * 1024 },
    ).catch((error: { stdout?: string; stderr?: string }) => error);
    const report = JSON.parse(lint.stdout ?? '{}') as {
      problems?: { ruleId: string; severity: string; message: string; location: { pointer: string }[] }[];
    };
    assert.ok(report.problems, `redocly printed no report: ${lint.stderr}`);
    const problems = report.problems.map(
      (p) => `${p.severity} ${p.ruleId}: ${p.message} (${p.location[0]?.pointer})`,
    );
    assert.deepEqual(problems, []);
  });

  it('names every operation once, in camelCase, under tags declared with a description', () => {
    const declared = new Map((doc.tags ?? []).map((tag) => [tag.name, tag.description]));
    const ids = new Set<string>();
    for (const [path, method, operation] of operations(doc)) {
      const where = `${method.toUpperCase()} ${path}`;
      assert.match(operation.operationId ?? '', /^[a-z][a-zA-Z0-9]*$/, where);
      assert.ok(!ids.has(operation.operationId!), `${where}: ${operation.operationId} twice`);
      ids.add(operation.operationId!);
      assert.ok(operation.tags?.length, `${where} has no tag`);
      for (const tag of operation.tags!) assert.ok(declared.get(tag), `${where}: tag ${tag} not declared`);
    }
    assert.ok(ids.size > 40);
  });

  it('has a server and no wildcard path', () => {
    assert.deepEqual(doc.servers, [{ url: '/' }]);
    for (const path of Object.keys(doc.paths)) assert.doesNotMatch(path, /\*/);
    const transform = doc.paths['/t/{signature}/{options}/{source}']?.['get'];
    assert.ok(transform, 'the transform URL is documented with its path parameters');
    assert.deepEqual(
      transform.parameters?.filter((p) => p.in === 'path').map((p) => p.name),
      ['signature', 'options', 'source'],
    );
  });

  it('answers every error as application/problem+json with the one Problem schema', () => {
    let errors = 0;
    for (const [path, method, operation] of operations(doc)) {
      for (const [status, response] of Object.entries(operation.responses)) {
        if (Number(status) < 400) continue;
        errors++;
        assert.deepEqual(
          response.content,
          { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
          `${method.toUpperCase()} ${path} ${status}`,
        );
      }
    }
    assert.ok(errors > 200);
  });

  it('documents tus as it answers', () => {
    const uploads = doc.paths['/api/v1/uploads']!;
    const upload = doc.paths['/api/v1/uploads/{id}']!;
    assert.deepEqual(Object.keys(uploads).sort(), ['options', 'post']);
    assert.deepEqual(Object.keys(upload).sort(), ['delete', 'head', 'options', 'patch']);
    const created = uploads['post']!.responses['201']!;
    assert.ok(created.headers?.['Location'] && created.headers['Upload-Offset']);
    const tusHeaders = (operation: Operation) =>
      operation.parameters?.filter((p) => p.in === 'header').map((p) => `${p.name}${p.required ? '!' : ''}`);
    assert.deepEqual(tusHeaders(uploads['post']!), ['Tus-Resumable!', 'Upload-Length!', 'Upload-Metadata']);
    const appended = upload['patch']!.responses['204']!;
    assert.ok(appended.headers?.['Upload-Offset'] && appended.headers['Asset-Id']);
    assert.equal(appended.content, undefined);
    assert.deepEqual(tusHeaders(upload['patch']!), ['Tus-Resumable!', 'Upload-Offset!']);
    assert.deepEqual(Object.keys(upload['patch']!.requestBody!.content), ['application/offset+octet-stream']);
    assert.ok(upload['head']!.responses['200']!.headers?.['Upload-Offset']);
    assert.ok(upload['delete']!.responses['204']);
    assert.ok(uploads['options']!.responses['204']!.headers?.['Tus-Version']);
    for (const [path, method, operation] of operations(doc).filter(([path]) => path.includes('/uploads'))) {
      for (const status of ['401', '404', '412']) {
        if (method === 'options' && status === '412') continue;
        if (path === '/api/v1/uploads' && status === '404') continue;
        assert.ok(operation.responses[status], `${method} ${path} ${status}`);
      }
    }
  });

  it('documents the 2xx of every operation, and a 204 where there is no body', () => {
    for (const [path, method, operation] of operations(doc)) {
      assert.ok(
        Object.keys(operation.responses).some((status) => status.startsWith('2')),
        `${method} ${path}`,
      );
    }
    assert.deepEqual(doc.paths['/api/v1/schedules/{id}']!['delete']!.responses['204']!.content, undefined);
  });

  it('documents the delivery answers with their headers and binary content, and needs no credentials', () => {
    const binary = { schema: { type: 'string', format: 'binary' } };
    const delivery = operations(doc).filter(([path]) => /^\/[avt]\//.test(path));
    // /a and /v, their variants and HLS ladders, and /t: each with HEAD and GET.
    assert.equal(delivery.length, 14);
    for (const path of ['/a/{id}/hls/{path}', '/v/{id}/hls/{path}']) {
      assert.ok(doc.paths[path]?.['get'], path);
    }
    for (const [path, method, operation] of delivery) {
      const where = `${method.toUpperCase()} ${path}`;
      assert.deepEqual(operation.security, [], where);
      const { responses } = operation;
      const expected = method === 'get' ? ['200', '206', '304', '412', '416'] : ['200', '304', '412'];
      for (const status of expected) assert.ok(responses[status], `${where} ${status}`);
      for (const name of ['ETag', 'Last-Modified', 'Cache-Control', 'Accept-Ranges', 'Content-Length']) {
        assert.ok(responses['200']!.headers?.[name], `${where} 200 ${name}`);
      }
      for (const name of ['ETag', 'Last-Modified', 'Cache-Control']) {
        assert.ok(responses['304']!.headers?.[name], `${where} 304 ${name}`);
      }
      assert.equal(responses['304']!.content, undefined);
      if (method === 'get') {
        assert.deepEqual(responses['200']!.content, { '*/*': binary }, where);
        assert.deepEqual(responses['206']!.content, { '*/*': binary }, where);
        assert.ok(responses['206']!.headers?.['Content-Range'], `${where} 206 Content-Range`);
        assert.ok(responses['416']!.headers?.['Content-Range'], `${where} 416 Content-Range`);
      } else {
        assert.equal(responses['200']!.content, undefined, where);
      }
      if (path.startsWith('/t/')) assert.ok(responses['200']!.headers?.['Vary'], `${where} Vary`);
    }
  });

  it('documents the event streams as text/event-stream', () => {
    for (const path of ['/api/v1/events', '/api/v1/jobs/{id}/events']) {
      const ok = doc.paths[path]!['get']!.responses['200']!;
      assert.deepEqual(Object.keys(ok.content ?? {}), ['text/event-stream'], path);
    }
  });

  it('documents the upload bodies: multipart/form-data with a binary file, or the raw bytes', () => {
    for (const [path, method] of [
      ['/api/v1/assets', 'post'],
      ['/api/v1/assets/{id}/content', 'put'],
    ] as const) {
      const content = doc.paths[path]![method]!.requestBody?.content;
      assert.ok(content, `${method} ${path} has a request body`);
      const form = content['multipart/form-data']!.schema;
      assert.deepEqual(form.properties.file, { type: 'string', format: 'binary' });
      assert.deepEqual(form.required, ['file']);
      assert.deepEqual(content['*/*'], {
        schema: { type: 'string', format: 'binary' },
      });
    }
    const created = doc.paths['/api/v1/assets']!['post']!.responses['201']!;
    assert.ok(created.headers?.['Location']);
  });

  it('gives a TypeScript client (openapi-typescript) that type-checks against an example', async () => {
    await writeFile(join(dir, 'conveyor.ts'), await openapiTS(structuredClone(doc) as unknown as OpenAPI3));
    await copyFile(join(ROOT, 'test/fixtures/openapi-client/example.ts'), join(dir, 'example.ts'));
    const compilerOptions = {
      target: 'es2024',
      module: 'nodenext',
      moduleResolution: 'nodenext',
      lib: ['es2024'],
      types: ['node'],
      strict: true,
      noUncheckedIndexedAccess: true,
      verbatimModuleSyntax: true,
      erasableSyntaxOnly: true,
      allowImportingTsExtensions: true,
      noEmit: true,
    };
    const config = join(dir, 'tsconfig.json');
    await writeFile(config, JSON.stringify({ compilerOptions, files: ['conveyor.ts', 'example.ts'] }));
    const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
    const checked = await run(process.execPath, [tsc, '-p', config]).catch(
      (error: { stdout?: string; stderr?: string; code?: number }) => error,
    );
    assert.equal(`${checked.stdout ?? ''}${checked.stderr ?? ''}`, '');
  });

  it('documents the Location of a published version', () => {
    const published = doc.paths['/api/v1/assets/{id}/publish']!['post']!.responses['201']!;
    assert.ok(published.headers?.['Location']);
  });
});
