import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, configTable, loadConfig, redactedConfig } from '../../src/config/config.ts';
import { envName } from '../../src/config/schema.ts';
import { PROTOTYPE_NAMES } from '../helpers/prototype.ts';
import { makeTempDir } from '../helpers/tmp.ts';

describe('config', () => {
  it('defaults to the embedded setup', () => {
    const config = loadConfig({});
    assert.equal(config.dataDir, './data');
    assert.equal(config.port, 8080);
    assert.equal(config.storage, 'fs');
    assert.equal(config.databaseUrl, undefined);
  });

  it('reads CONVEYOR_* variables with types', () => {
    const config = loadConfig({
      CONVEYOR_PORT: '9000',
      CONVEYOR_S3_FORCE_PATH_STYLE: 'yes',
      CONVEYOR_STORAGE: 's3',
    });
    assert.equal(config.port, 9000);
    assert.equal(config.s3ForcePathStyle, true);
    assert.equal(config.storage, 's3');
  });

  it('names every bad key at once', () => {
    const error = (() => {
      try {
        loadConfig({
          CONVEYOR_PORT: 'abc',
          CONVEYOR_STORAGE: 'ftp',
          CONVEYOR_MAX_RANGES: '0',
          CONVEYOR_PROT: '1',
        });
      } catch (e) {
        return e;
      }
    })();
    assert.ok(error instanceof ConfigError);
    const text = error.message;
    for (const name of ['CONVEYOR_PORT', 'CONVEYOR_STORAGE', 'CONVEYOR_MAX_RANGES', 'CONVEYOR_PROT']) {
      assert.match(text, new RegExp(name), `${name} is named`);
    }
    assert.equal(error.problems.length, 4);
  });

  it('takes a metrics port of 0 to 65535 and a metrics token of 16 characters or more', () => {
    const config = loadConfig({ CONVEYOR_METRICS_PORT: '0', CONVEYOR_METRICS_TOKEN: 'a'.repeat(16) });
    assert.equal(config.metricsPort, 0);
    assert.equal(redactedConfig(config)['metricsToken'], '[redacted]');
    for (const [name, value] of [
      ['CONVEYOR_METRICS_PORT', '65536'],
      ['CONVEYOR_METRICS_PORT', 'x'],
      ['CONVEYOR_METRICS_TOKEN', 'short'],
    ]) {
      assert.throws(() => loadConfig({ [name!]: value }), new RegExp(name!), `${name}=${value}`);
    }
  });

  it('layers defaults < file < environment', async () => {
    const dir = await makeTempDir('conveyor-config-');
    try {
      const file = join(dir.path, 'conveyor.json');
      writeFileSync(file, JSON.stringify({ port: 7000, logLevel: 'debug' }));
      const config = loadConfig({ CONVEYOR_CONFIG: file, CONVEYOR_LOG_LEVEL: 'warn' });
      assert.equal(config.port, 7000);
      assert.equal(config.logLevel, 'warn');
      writeFileSync(file, JSON.stringify({ porrt: 1 }));
      assert.throws(() => loadConfig({ CONVEYOR_CONFIG: file }), /porrt.*unknown setting/);
      writeFileSync(file, '{ not json');
      assert.throws(() => loadConfig({ CONVEYOR_CONFIG: file }), /CONVEYOR_CONFIG: cannot read/);
    } finally {
      await dir.cleanup();
    }
  });

  it('refuses setting names and limit names that Object.prototype lends to every object', async () => {
    const dir = await makeTempDir('conveyor-config-');
    try {
      for (const name of PROTOTYPE_NAMES) {
        const file = join(dir.path, `${name}.json`);
        writeFileSync(file, `{${JSON.stringify(name)}: 1}`);
        assert.throws(() => loadConfig({ CONVEYOR_CONFIG: file }), /unknown setting/, name);
        assert.throws(
          () => loadConfig({ CONVEYOR_JOB_TYPE_CONCURRENCY: `${name}=1` }),
          /reserved name/,
          `limits ${name}`,
        );
      }
    } finally {
      await dir.cleanup();
    }
  });

  it('rejects a database URL of another kind', () => {
    assert.throws(() => loadConfig({ CONVEYOR_DATABASE_URL: 'mysql://x' }), /CONVEYOR_DATABASE_URL/);
    assert.equal(loadConfig({ CONVEYOR_DATABASE_URL: 'sqlite::memory:' }).databaseUrl, 'sqlite::memory:');
  });

  it('redacts secrets, keeping the database host readable', () => {
    const config = loadConfig({
      CONVEYOR_ADMIN_KEY: 'cvk_supersecretsupersecret',
      CONVEYOR_DATABASE_URL: 'postgres://user:hunter2@db.internal:5432/conveyor',
      CONVEYOR_S3_SECRET_ACCESS_KEY: 'abcdef',
    });
    const text = JSON.stringify(redactedConfig(config));
    assert.doesNotMatch(text, /supersecret|hunter2|abcdef/);
    assert.match(text, /db\.internal/);
  });

  it('keeps the README configuration table in step with the settings', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    assert.ok(
      readme.includes(configTable()),
      'README.md table differs: regenerate with `conveyor config --table`',
    );
  });

  it('documents every setting in the generated table', () => {
    const table = configTable();
    for (const key of Object.keys(loadConfig({}))) assert.match(table, new RegExp(`\`${envName(key)}\``));
  });
});
