import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CHILD_GUARD_MS, freePort, ROOT } from './child.ts';
import { makeTempDir, type TempDir } from './tmp.ts';

/** The VCL operators run, used by the tests as shipped. */
export const SHIPPED_VCL = join(ROOT, 'deploy/varnish/conveyor.vcl');

/** Cache storage of a test's varnishd: far above what a test stores, far below the machine's memory. */
const STORAGE = 'malloc,64m';
/** How often the start waits for varnishd to answer, and how long one probe may take. */
const READY_POLL_MS = 50;
const PROBE_TIMEOUT_MS = 2_000;
/** Starts retried when the chosen port was taken between the probe and varnishd's bind. */
const BIND_ATTEMPTS = 3;

/**
 * The `skip` option of a test that needs Varnish: a reason when varnishd or varnish-modules' xkey vmod is
 * missing. In CI (CI=true) both must be there: .ci/run installs them.
 */
export function skipWithoutVarnish(): string | false {
  const dir = mkdtempSync(join(tmpdir(), 'conveyor-varnish-check-'));
  try {
    const vcl = join(dir, 'check.vcl');
    writeFileSync(vcl, 'vcl 4.1;\nimport xkey;\nbackend default none;\n');
    // -C compiles the VCL to C and stops: it resolves the import without starting anything.
    const check = spawnSync('varnishd', ['-j', 'none', '-n', join(dir, 'work'), '-C', '-f', vcl], {
      encoding: 'utf8',
    });
    if (check.status === 0) return false;
    const reason =
      check.error !== undefined
        ? 'varnishd is not installed'
        : /Could not find VMOD xkey/.test(check.stderr)
          ? "Varnish's xkey vmod (varnish-modules) is not installed"
          : `varnishd cannot compile VCL: ${check.stderr.split('\n').slice(-4).join(' ')}`;
    if (process.env['CI'] === 'true')
      throw new Error(`${reason}; Varnish with varnish-modules is required in CI (.ci/run installs them)`);
    return reason;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface VarnishOptions {
  /** Where the generated `backend conveyor` points. */
  backend: { host: string; port: number };
  /** The entries of `acl purgers`; loopback 127.0.0.1 by default, `[]` lists no one. */
  purgers?: string[];
}

export interface Varnish {
  /** `http://127.0.0.1:<port>`. */
  url: string;
  host: string;
  port: number;
  /** What varnishd wrote to stdout and stderr so far. */
  output(): string;
  /** Stops varnishd and removes its folders. */
  close(): Promise<void>;
}

/** The include file conveyor.vcl expects, as an operator writes it (deploy/varnish/conveyor-backend.vcl.example). */
function backendVcl(options: Pick<VarnishOptions, 'backend' | 'purgers'>): string {
  const purgers = (options.purgers ?? ['127.0.0.1']).map((entry) => `  "${entry}";\n`).join('');
  return [
    'backend conveyor {',
    `  .host = "${options.backend.host}";`,
    `  .port = "${options.backend.port}";`,
    '}',
    '',
    `acl purgers {\n${purgers}}`,
    '',
  ].join('\n');
}

/**
 * Starts a real varnishd in the foreground (-F) as a child of the test: its own working folder (-n), a
 * folder on vcl_path holding a generated conveyor-backend.vcl, the main VCL as shipped, malloc storage,
 * and 127.0.0.1 on a free port. Answers once varnishd answers HTTP.
 */
export async function startVarnish(options: VarnishOptions): Promise<Varnish> {
  const dir = await makeTempDir('conveyor-varnish-');
  try {
    const include = join(dir.path, 'vcl');
    mkdirSync(include);
    writeFileSync(join(include, 'conveyor-backend.vcl'), backendVcl(options));
    for (let attempt = 1; ; attempt++) {
      try {
        return await startOnce(dir, include);
      } catch (error) {
        if (!(error instanceof PortTaken) || attempt === BIND_ATTEMPTS) throw error;
      }
    }
  } catch (error) {
    await dir.cleanup();
    throw error;
  }
}

class PortTaken extends Error {}

async function startOnce(dir: TempDir, include: string): Promise<Varnish> {
  const host = '127.0.0.1';
  const port = await freePort();
  // -j none: run as the test's own user, which owns the temporary folders (the default jail switches to
  // the varnish user when started as root, and that user cannot read them).
  const args = ['-F', '-j', 'none', '-n', join(dir.path, 'work'), '-a', `${host}:${port}`];
  args.push('-f', SHIPPED_VCL, '-p', `vcl_path=${include}`, '-s', STORAGE);
  const child = spawn('varnishd', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const collect = (text: string) => {
    output += text;
  };
  child.stdout.setEncoding('utf8').on('data', collect);
  child.stderr.setEncoding('utf8').on('data', collect);
  const exited = once(child, 'exit');
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
  };
  const deadline = Date.now() + CHILD_GUARD_MS;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      if (/Address already in use/i.test(output)) throw new PortTaken(output);
      throw new Error(`varnishd exited (${child.exitCode ?? child.signalCode}):\n${output}`);
    }
    if (await answers(host, port)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`varnishd did not answer:\n${output}`);
    }
    await sleep(READY_POLL_MS);
  }
  return {
    url: `http://${host}:${port}`,
    host,
    port,
    output: () => output,
    async close() {
      await stop();
      await dir.cleanup();
    },
  };
}

/**
 * Whether varnishd answers HTTP on the port: any status will do, since the answer comes from the child
 * process once its VCL is loaded. The probe uses a method that the VCL answers itself (PURGE from a purger,
 * or 403 from anyone else) so that it never reaches the backend the test counts requests on.
 */
function answers(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({
      host,
      port,
      method: 'PURGE',
      path: '/.varnish-ready',
      timeout: PROBE_TIMEOUT_MS,
    });
    req.on('response', (res) => {
      res.resume();
      // Varnish stamps every answer, its own included, with X-Varnish: anything else on the port is not it.
      resolve(res.headers['x-varnish'] !== undefined);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}
