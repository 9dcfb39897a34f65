import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProgressWriter } from '../../src/jobs/progress.ts';
import type { JobProgress } from '../../src/jobs/types.ts';

test('fields left out keep their values, but a new stage drops the message of the one before', async () => {
  const written: JobProgress[] = [];
  const writer = new ProgressWriter(0, async (progress) => {
    written.push(progress);
  });
  writer.update({ stage: 'encoding 240p', percent: 10, message: '3.1x' });
  writer.update({ percent: 20 });
  writer.update({ stage: 'encoding 360p', percent: 50 });
  writer.update({ stage: 'encoding 360p', percent: 60, message: '2.0x' });
  writer.update({ stage: 'done', percent: 100 });
  await writer.flush();
  assert.deepEqual(written, [
    { stage: 'encoding 240p', percent: 10, message: '3.1x' },
    { stage: 'encoding 240p', percent: 20, message: '3.1x' },
    { stage: 'encoding 360p', percent: 50, message: null },
    { stage: 'encoding 360p', percent: 60, message: '2.0x' },
    { stage: 'done', percent: 100, message: null },
  ]);
});
