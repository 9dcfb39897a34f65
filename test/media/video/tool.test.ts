import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { MAX_LINE_CHARS, runTool, toolEnv } from '../../../src/media/video/tool.ts';

/** Runs `script` in Node as the tool: behaviour no real tool can be made to show on demand. */
function node(script: string): [string, string[]] {
  return [process.execPath, ['-e', script]];
}

/** Whether the process has ended: gone, or a zombie its new parent has not reaped yet. */
function ended(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    assert.equal((error as NodeJS.ErrnoException).code, 'ESRCH');
    return true;
  }
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
}

describe('toolEnv', () => {
  it("leaves out the allocator variables the launcher set for Node, and keeps the operator's", () => {
    const env = {
      PATH: '/usr/bin',
      MALLOC_ARENA_MAX: '2',
      MALLOC_MMAP_THRESHOLD_: '65536',
      CONVEYOR_LAUNCHER_MALLOC: 'MALLOC_ARENA_MAX',
    };
    assert.deepEqual(toolEnv(env), { PATH: '/usr/bin', MALLOC_MMAP_THRESHOLD_: '65536' });
    assert.equal(toolEnv({ PATH: '/usr/bin' })['PATH'], '/usr/bin');
  });

  it('is what a tool runs with', async () => {
    const [tool, args] = node('process.stdout.write(String(process.env.MALLOC_ARENA_MAX))');
    const lines: string[] = [];
    await runTool(tool, args, {
      stopping: { how: 'kill' },
      env: { ...process.env, MALLOC_ARENA_MAX: '2', CONVEYOR_LAUNCHER_MALLOC: 'MALLOC_ARENA_MAX ' },
      onLine: (l) => lines.push(l),
    });
    assert.deepEqual(lines, ['undefined']);
  });
});

describe('runTool', () => {
  it('hands stdout over line by line, the last line without a newline too, and long lines cut', async () => {
    const lines: string[] = [];
    const [tool, args] = node(
      `process.stdout.write('one\\ntw'); setTimeout(() => process.stdout.write('o\\n' + 'x'.repeat(${MAX_LINE_CHARS + 10}) + 'y\\nlast'), 20)`,
    );
    const end = await runTool(tool, args, { stopping: { how: 'kill' }, onLine: (l) => lines.push(l) });
    assert.equal(end.exitCode, 0);
    assert.equal(end.stopped, undefined);
    assert.deepEqual(lines.slice(0, 2), ['one', 'two']);
    assert.equal(lines[2]?.length, MAX_LINE_CHARS);
    assert.ok(lines[2]?.endsWith('xy'));
    assert.equal(lines[3], 'last');
  });

  it('answers a failed exit with the end of stderr, for the caller to judge', async () => {
    const [tool, args] = node(`process.stderr.write('first\\nsecond\\n'); process.exit(3)`);
    const end = await runTool(tool, args, { stopping: { how: 'kill' } });
    assert.deepEqual(
      { exitCode: end.exitCode, signal: end.signal, stopped: end.stopped, stderr: end.stderrTail },
      { exitCode: 3, signal: null, stopped: undefined, stderr: 'first\nsecond\n' },
    );
  });

  it('stops a run whose collected stdout passes the cap', async () => {
    const [tool, args] = node(`process.stdout.write('x'.repeat(1000)); setInterval(() => {}, 1000)`);
    const end = await runTool(tool, args, { stopping: { how: 'kill' }, collectStdout: 100 });
    assert.deepEqual(end.stopped, { by: 'output', maxBytes: 100 });
    assert.equal(end.signal, 'SIGKILL');
  });

  it('stops a run when a line handler throws, with that error', async () => {
    const failure = new Error('handler failed');
    const [tool, args] = node(`console.log('line'); setInterval(() => {}, 1000)`);
    const end = await runTool(tool, args, {
      stopping: { how: 'kill' },
      onLine: () => {
        throw failure;
      },
    });
    assert.deepEqual(end.stopped, { by: 'handler', error: failure });
  });

  it('stops a run past its time limit', async () => {
    const [tool, args] = node('setInterval(() => {}, 1000)');
    const end = await runTool(tool, args, { stopping: { how: 'kill' }, timeLimitMs: 100 });
    assert.deepEqual(end.stopped, { by: 'time-limit', limitMs: 100 });
  });

  it('stops a process group on abort, what the tool started included, once it has exited', async () => {
    const controller = new AbortController();
    let grandchild = 0;
    let pid = 0;
    // The tool starts a child of its own that inherits stdout, reports its pid, and ignores nothing.
    const [tool, args] = node(
      `const c = require('node:child_process').spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: ['ignore', 'inherit', 'ignore'] }); console.log(c.pid); setInterval(() => {}, 1000)`,
    );
    const end = await runTool(tool, args, {
      stopping: { how: 'group', graceMs: 5000 },
      signal: controller.signal,
      onSpawn: (p) => {
        pid = p;
      },
      onLine: (line) => {
        grandchild = Number(line);
        controller.abort('cancelled');
      },
    });
    assert.deepEqual(end.stopped, { by: 'signal', reason: 'cancelled' });
    assert.equal(end.signal, 'SIGTERM');
    assert.ok(grandchild > 0);
    assert.equal(ended(pid), true);
    assert.equal(ended(grandchild), true);
  });

  it('does not start a run whose signal is already aborted', async () => {
    let spawned = false;
    const end = await runTool(process.execPath, ['--version'], {
      stopping: { how: 'kill' },
      signal: AbortSignal.abort('early'),
      onSpawn: () => {
        spawned = true;
      },
    });
    assert.deepEqual(end.stopped, { by: 'signal', reason: 'early' });
    assert.equal(spawned, false);
  });

  it('rejects with the error of a tool that cannot be started', async () => {
    await assert.rejects(runTool('/nonexistent/tool', [], { stopping: { how: 'kill' } }), { code: 'ENOENT' });
  });
});
