/**
 * Summarises a V8 .cpuprofile (as written by `node --cpu-prof`, e.g. `bench/run.sh --cpu-prof <dir>`):
 * where the samples fall by area (package, Node internals, Conveyor's own code, GC, idle), and the
 * functions with the most self and inclusive time.
 *
 *   node_modules/.bin/node bench/profile-summary.ts <file.cpuprofile> [--top 25]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { top: { type: 'string', default: '25' } },
});
if (positionals.length !== 1) {
  console.error('usage: bench/profile-summary.ts <file.cpuprofile> [--top N]');
  process.exit(2);
}
const top = Number(values.top);
const profile = JSON.parse(readFileSync(positionals[0]!, 'utf8')) as Profile;

const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const parent = new Map<number, number>();
for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);

// Self time per node: each sample's time delta belongs to the node that was on top of the stack.
const self = new Map<number, number>();
profile.samples.forEach((id, i) => {
  self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
});
const all = [...self.values()].reduce((a, b) => a + b, 0);
// Percentages are of the time the main thread was busy: idle time depends only on how long the process
// waited (e.g. while nginx was being measured), not on what it did.
const idleIds = profile.nodes
  .filter((node) => node.callFrame.functionName === '(idle)')
  .map((node) => node.id);
const idle = idleIds.reduce((sum, id) => sum + (self.get(id) ?? 0), 0);
for (const id of idleIds) self.delete(id);
const total = all - idle;

function area(frame: CallFrame): string {
  const { url, functionName } = frame;
  if (!url) return functionName.startsWith('(') ? functionName : `(native) ${functionName || 'anonymous'}`;
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return `npm:${pkg[1]}`;
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/').slice(0, 2).join('/')}`;
  const src = /\/(src|bench|test)\/(.+)$/.exec(url);
  if (src) return `conveyor:${src[1]}/${src[2]!.split('/')[0]}`;
  return url;
}

const key = (frame: CallFrame) =>
  `${frame.functionName || '(anonymous)'} ${frame.url ? `${frame.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*?\/(src|bench|test)\//, '$1/')}:${frame.lineNumber + 1}` : ''}`.trim();

const areas = new Map<string, number>();
const selfByFunction = new Map<string, number>();
const inclusiveByFunction = new Map<string, number>();
for (const [id, time] of self) {
  const node = byId.get(id)!;
  areas.set(area(node.callFrame), (areas.get(area(node.callFrame)) ?? 0) + time);
  selfByFunction.set(key(node.callFrame), (selfByFunction.get(key(node.callFrame)) ?? 0) + time);
  // Inclusive: credit every distinct function on the stack once.
  const seen = new Set<string>();
  for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
    const k = key(byId.get(at)!.callFrame);
    if (seen.has(k)) continue;
    seen.add(k);
    inclusiveByFunction.set(k, (inclusiveByFunction.get(k) ?? 0) + time);
  }
}

const pct = (time: number) => `${((100 * time) / total).toFixed(1).padStart(5)}%`;
function print(title: string, map: Map<string, number>, limit: number): void {
  console.log(`\n## ${title}\n`);
  for (const [name, time] of [...map].sort((a, b) => b[1] - a[1]).slice(0, limit)) {
    console.log(`${pct(time)}  ${name}`);
  }
}

console.log(
  `profile: ${(all / 1e6).toFixed(1)} s sampled, ${(total / 1e6).toFixed(1)} s busy (percentages below are of busy time)`,
);
print('Self time by area', areas, top);
print('Self time by function', selfByFunction, top);
print('Inclusive time by function', inclusiveByFunction, top);
