import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Progress, type ProgressStream, StageProgress } from '../../src/cli/progress.ts';

/** A stream that records what is written, a terminal or not; and a clock the test moves. */
function sink(isTTY: boolean): { out: ProgressStream; text(): string } {
  let text = '';
  const out = {
    isTTY,
    write(chunk: string) {
      text += chunk;
      return true;
    },
  } as unknown as ProgressStream;
  return { out, text: () => text };
}

function clock() {
  let now = 0;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

const MiB = 1048576;

describe('upload progress', () => {
  it('on a terminal redraws one line with \\r, ending at 100 % and a newline', () => {
    const { out, text } = sink(true);
    const time = clock();
    const progress = new Progress(out, 10 * MiB, time.now);
    progress.start();
    for (let sent = MiB; sent <= 10 * MiB; sent += MiB) {
      time.advance(1000);
      progress.update(sent);
    }
    progress.finish();
    const written = text();
    assert.ok(written.startsWith('\r'), JSON.stringify(written));
    assert.ok(written.endsWith('\n'), JSON.stringify(written));
    assert.equal(written.split('\n').length, 2, 'one line, redrawn');
    const draws = written.trimEnd().split('\r').filter(Boolean);
    assert.match(draws.at(-1)!, /^uploading 10\.0 \/ 10\.0 MiB \(100%, 1\.0 MiB\/s\)/);
    assert.match(draws[1]!, /^uploading 1\.0 \/ 10\.0 MiB \(10%/);
  });

  it('on a terminal draws at most every 200 ms, but always the last state', () => {
    const { out, text } = sink(true);
    const time = clock();
    const progress = new Progress(out, 1000, time.now);
    progress.start();
    for (let sent = 1; sent <= 999; sent++) progress.update(sent);
    progress.finish();
    const draws = text().trimEnd().split('\r').filter(Boolean);
    assert.equal(draws.length, 2, 'the start and the end');
    assert.match(draws[1]!, /\(100%/);
  });

  it('elsewhere writes plain lines, one per 10 % passed, ending at 100 % once', () => {
    const { out, text } = sink(false);
    const time = clock();
    const progress = new Progress(out, 1000, time.now);
    progress.start(250);
    for (let sent = 260; sent <= 1000; sent += 10) {
      time.advance(10);
      progress.update(sent);
    }
    progress.finish();
    const written = text();
    assert.ok(!written.includes('\r'));
    const percents = written
      .trimEnd()
      .split('\n')
      .map((line) => Number(/\((\d+)%/.exec(line)?.[1]));
    assert.deepEqual(percents, [25, 30, 40, 50, 60, 70, 80, 90, 100]);
  });

  it('an upload that stops short ends the terminal line without claiming 100 %', () => {
    const { out, text } = sink(true);
    const progress = new Progress(out, 1000, clock().now);
    progress.start();
    progress.update(400);
    progress.abandon();
    assert.ok(text().endsWith('\n'));
    assert.ok(!text().includes('100%'));
  });
});

describe('job stage progress', () => {
  it('on a terminal redraws one line, padded over a longer one, and ends it', () => {
    const { out, text } = sink(true);
    const progress = new StageProgress(out, 'video');
    progress.update({ stage: 'encoding h264-240p', percent: 12.5, message: '2.1x' });
    progress.update({ stage: 'done', percent: 100 });
    progress.end();
    assert.equal(
      text(),
      '\rvideo: encoding h264-240p 12% (2.1x)' + `\r${'video: done 100%'.padEnd(36)}` + '\n',
    );
  });

  it('elsewhere writes a line per stage and per 10 % passed within one', () => {
    const { out, text } = sink(false);
    const progress = new StageProgress(out, 'video');
    for (const percent of [5, 7, 12, 14, 31]) progress.update({ stage: 'encoding h264-240p', percent });
    progress.update({ stage: 'done', percent: 100 });
    progress.end();
    assert.deepEqual(text().split('\n'), [
      'video: encoding h264-240p 5%',
      'video: encoding h264-240p 12%',
      'video: encoding h264-240p 31%',
      'video: done 100%',
      '',
    ]);
  });
});
