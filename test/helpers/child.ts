import { type ChildProcess, type ChildProcessByStdio, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

/** The repository root: the working directory of every child. */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** The CLI entry point, run with this very runtime (Node 24 strips the types). */
export const MAIN = join(ROOT, 'src/cli/main.ts');

// Every child loads the whole server (Fastify, Kysely, the AWS SDK) and strips its types; Node's compile
// cache, shared by the children of this test process, takes a good part of that off every one after the
// first. Made on first use, removed when the test process exits.
let compileCache: string | undefined;

function compileCacheDir(): string {
  if (compileCache === undefined) {
    const path = mkdtempSync(join(tmpdir(), 'conveyor-compile-cache-'));
    compileCache = path;
    process.once('exit', () => rmSync(path, { recursive: true, force: true, maxRetries: 3 }));
  }
  return compileCache;
}

/**
 * The environment of a child: the test runner's own, but with nothing CONVEYOR_*, NODE_TEST* or NODE_OPTIONS
 * leaking in, the shared compile cache, and then `settings`.
 */
export function childEnv(settings: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('CONVEYOR_') && !name.startsWith('NODE_TEST') && name !== 'NODE_OPTIONS')
      env[name] = value;
  }
  env['NODE_COMPILE_CACHE'] = compileCacheDir();
  return { ...env, ...settings };
}

/**
 * How long a test waits for a child process to come up (or a multi-process test to finish) before it
 * gives up. A guard against a child that hangs, not an estimate of how long starting takes: loading the
 * server takes about 2 s on an idle machine and 20-40 s on two cores shared with other suites, so the
 * guard is far above both and no wait is tuned to a machine's speed.
 */
export const CHILD_GUARD_MS = 180_000;

/**
 * Ports handed to children come from below the kernel's ephemeral range (32768-60999 on Linux, 49152 and
 * up on macOS and Windows). A child may take many seconds to bind the port it is given; a port from the
 * ephemeral range could meanwhile go to any socket on the machine that binds port 0 or connects out, as
 * every other test and test run here does all the time. Below that range only another explicit choice
 * can take it.
 */
const CHILD_PORTS = { first: 20_000, count: 12_000 };

/** A TCP port on 127.0.0.1, outside the ephemeral range, that was free a moment ago. */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = CHILD_PORTS.first + Math.floor(Math.random() * CHILD_PORTS.count);
    const probe = createServer();
    const bound = await new Promise<boolean>((resolve) => {
      probe.once('error', () => resolve(false));
      probe.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (!bound) continue;
    probe.close();
    await once(probe, 'close');
    return port;
  }
}

/** How one CLI run ended. */
export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `conveyor <args>` with this very runtime to completion and answers its exit code and output. */
/** The launcher users run: it compiles src/ into dist/ when needed and runs that. */
export const LAUNCHER = join(ROOT, 'bin/conveyor');

/** One CLI run, of the TypeScript source with this runtime, or through `launcher` (bin/conveyor). */
export async function runCli(
  args: string[],
  settings: Record<string, string>,
  launcher?: string,
): Promise<Run> {
  const [command, argv] = launcher ? [launcher, args] : [process.execPath, [MAIN, ...args]];
  const child = spawn(command, argv, {
    cwd: ROOT,
    env: childEnv(settings),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    stdout += text;
  });
  child.stderr.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
  });
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

/** A `conveyor serve` child process. */
export interface ServerProcess {
  process: ChildProcess;
  /** `http://127.0.0.1:<port>`, also its CONVEYOR_PUBLIC_URL. */
  url: string;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  /** Sends `signal` (unless it has already exited) and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * Starts `conveyor serve` as a child process on a free port of 127.0.0.1 and waits until /readyz answers
 * 200. `settings` is the rest of its configuration; the address settings (CONVEYOR_HOST, CONVEYOR_PORT,
 * CONVEYOR_PUBLIC_URL) are set here.
 */
export async function startServerProcess(settings: Record<string, string>): Promise<ServerProcess> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const { child, output } = spawnConveyor('serve', {
    ...settings,
    CONVEYOR_HOST: '127.0.0.1',
    CONVEYOR_PORT: String(port),
    CONVEYOR_PUBLIC_URL: url,
  });
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill(signal);
    await exited;
  };
  const deadline = Date.now() + CHILD_GUARD_MS;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`conveyor serve exited (${child.exitCode ?? child.signalCode}):\n${output()}`);
    }
    try {
      const res = await fetch(`${url}/readyz`);
      if (res.status === 200) break;
      await res.arrayBuffer();
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`conveyor serve did not become ready:\n${output()}`);
    }
    await sleep(50);
  }
  return { process: child, url, output, stop };
}

/** Starts `conveyor <command>` with this very runtime and `settings`, collecting stdout and stderr together. */
export function spawnConveyor(
  command: string,
  settings: Record<string, string>,
): { child: ChildProcessByStdio<null, Readable, Readable>; output(): string } {
  const child = spawn(process.execPath, [MAIN, command], {
    cwd: ROOT,
    env: childEnv(settings),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    output += text;
  });
  child.stderr.setEncoding('utf8').on('data', (text: string) => {
    output += text;
  });
  return { child, output: () => output };
}
