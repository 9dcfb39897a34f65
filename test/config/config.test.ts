import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, configTable, loadConfig, redactedConfig } from '../../src/config/config.ts';
import { DEFAULT_DENY_HOSTS } from '../../src/config/ingest-settings.ts';
import { transformLimits } from '../../src/config/media-settings.ts';
import { envName } from '../../src/config/schema.ts';
import { joinSections } from '../../src/config/setting.ts';
import { PROTOTYPE_NAMES } from '../helpers/prototype.ts';
import { makeTempDir } from '../helpers/tmp.ts';

describe('config', () => {
  it('refuses a setting that two sections define, where a spread would keep the later one', () => {
    const a = { x: { type: 'int', default: 1, min: 0, max: 2, doc: 'a' } } as const;
    const b = { y: { type: 'bool', default: false, doc: 'b' } } as const;
    assert.deepEqual(Object.keys(joinSections(a, b)), ['x', 'y']);
    assert.throws(() => joinSections(a, b, { x: a.x }), /setting x is defined in two sections/);
  });

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
    // Each problem names its variable once.
    assert.ok(error.problems.includes('CONVEYOR_PORT: expected an integer, got "abc"'), text);
    for (const problem of error.problems) assert.doesNotMatch(problem, /(CONVEYOR_\w+).*\1/, problem);
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
      writeFileSync(file, JSON.stringify({ port: 'x' }));
      assert.throws(
        () => loadConfig({ CONVEYOR_CONFIG: file }),
        (e: ConfigError) =>
          e.problems[0] === `CONVEYOR_PORT ("port" in ${file}): expected an integer, got "x"`,
      );
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

  it('hands out the typed values of settings written as text', () => {
    const config = loadConfig({
      CONVEYOR_INGEST_ALLOW_ADDRESSES: '10.1.2.0/24',
      CONVEYOR_INGEST_ALLOWED_PORTS: '80,443',
      CONVEYOR_WORKER_LANES: 'critical, high',
      CONVEYOR_JOB_MODULES: './a.ts, ./b.ts',
    });
    assert.deepEqual(config.ingestAllowAddresses, [{ family: 4, base: 0x0a010200n, prefix: 24 }]);
    assert.deepEqual(config.ingestAllowedPorts, [80, 443]);
    assert.deepEqual(config.workerLanes, ['critical', 'high']);
    assert.deepEqual(config.jobModules, ['./a.ts', './b.ts']);
    assert.deepEqual(config.ingestDenyHosts, DEFAULT_DENY_HOSTS);
    assert.deepEqual(config.transformFormats, ['jpeg', 'png', 'webp', 'avif']);
    assert.deepEqual(config.imageVariantFormats, ['webp', 'avif', 'jpeg']);
    assert.equal(config.ingestKinds['avatar'], 'critical');
    assert.deepEqual(Object.keys(config.imagePresets), ['thumb', 'small', 'medium', 'large']);
    assert.equal(config.imagePresets['thumb']!.gravity, 'attention');
    // Unset, or naming nothing, an optional list is undefined.
    const unset = loadConfig({ CONVEYOR_WORKER_TYPES: ' , ' });
    assert.equal(unset.workerTypes, undefined);
    assert.equal(unset.ingestAllowHosts, undefined);
    assert.equal(unset.metricsPort, undefined);
  });

  it('names a setting whose text does not parse', () => {
    for (const [name, value, message] of [
      ['CONVEYOR_WORKER_LANES', 'high,urgent', /unknown lanes urgent/],
      ['CONVEYOR_INGEST_ALLOW_ADDRESSES', '10.0.0.0/33', /not an address or CIDR/],
      ['CONVEYOR_INGEST_KINDS', 'avatar=critical', /"default"/],
      ['CONVEYOR_TRANSFORM_FORMATS', 'gif', /unknown format "gif"/],
      ['CONVEYOR_IMAGE_PRESETS', 'thumb=w:0', /preset thumb: w must be between 1/],
    ] as const) {
      assert.throws(() => loadConfig({ [name]: value }), new RegExp(`${name}: .*${message.source}`));
    }
  });

  it('reads the CORS origins of each surface, * for delivery only', () => {
    const unset = loadConfig({});
    assert.equal(unset.corsApiOrigins, undefined);
    assert.equal(unset.corsUploadsOrigins, undefined);
    assert.equal(unset.corsDeliveryOrigins, undefined);
    const config = loadConfig({
      CONVEYOR_CORS_API_ORIGINS: 'https://app.example.com',
      CONVEYOR_CORS_UPLOADS_ORIGINS: 'https://app.example.com,http://localhost:3000',
      CONVEYOR_CORS_DELIVERY_ORIGINS: '*',
      CONVEYOR_CORS_MAX_AGE_SECONDS: '60',
    });
    assert.deepEqual(config.corsApiOrigins, ['https://app.example.com']);
    assert.deepEqual(config.corsUploadsOrigins, ['https://app.example.com', 'http://localhost:3000']);
    assert.equal(config.corsDeliveryOrigins, '*');
    assert.equal(config.corsMaxAgeSeconds, 60);
    const error = (() => {
      try {
        loadConfig({
          CONVEYOR_CORS_API_ORIGINS: '*',
          CONVEYOR_CORS_UPLOADS_ORIGINS: 'https://app.example.com/upload',
          CONVEYOR_CORS_DELIVERY_ORIGINS: 'https://cdn.example.com:443',
        });
      } catch (e) {
        return e;
      }
    })();
    assert.ok(error instanceof ConfigError);
    assert.equal(error.problems.length, 3);
    assert.match(error.problems[0]!, /^CONVEYOR_CORS_API_ORIGINS: .*"\*" is allowed for delivery only/);
    assert.match(error.problems[1]!, /^CONVEYOR_CORS_UPLOADS_ORIGINS: .*not an origin/);
    assert.match(error.problems[2]!, /^CONVEYOR_CORS_DELIVERY_ORIGINS: .*default port/);
  });

  it('holds presets to the configured transform limits, except in size', () => {
    assert.equal(
      loadConfig({ CONVEYOR_IMAGE_PRESETS: 'big=w:16383,dpr:1' }).imagePresets['big']!.width,
      16383,
      'a preset may be as large as a variant',
    );
    assert.throws(
      () => loadConfig({ CONVEYOR_IMAGE_PRESETS: 'x=w:100,f:avif', CONVEYOR_TRANSFORM_FORMATS: 'jpeg,webp' }),
      /CONVEYOR_IMAGE_PRESETS: preset x: f: avif output is not enabled/,
    );
    assert.throws(
      () => loadConfig({ CONVEYOR_IMAGE_PRESETS: 'x=w:100,blur:60', CONVEYOR_TRANSFORM_MAX_BLUR: '50' }),
      /preset x: blur must be between 0.3 and 50/,
    );
    assert.equal(
      loadConfig({ CONVEYOR_IMAGE_PRESETS: 'x=w:100,dpr:6', CONVEYOR_TRANSFORM_MAX_DPR: '8' }).imagePresets[
        'x'
      ]!.dpr,
      6,
    );
    // A bad limit is reported once, under its own name, and not again as a bad preset.
    const error = (() => {
      try {
        loadConfig({ CONVEYOR_TRANSFORM_FORMATS: 'gif' });
      } catch (e) {
        return e as ConfigError;
      }
    })();
    assert.deepEqual(
      error?.problems.map((p) => p.split(':')[0]),
      ['CONVEYOR_TRANSFORM_FORMATS'],
    );
  });

  it('bounds transform URLs by the transform settings', () => {
    assert.deepEqual(transformLimits(loadConfig({})), {
      maxWidth: 4096,
      maxHeight: 4096,
      maxDpr: 4,
      maxBlur: 100,
      maxSharpen: 10,
      maxOptionsLength: 256,
      formats: ['jpeg', 'png', 'webp', 'avif'],
    });
    const config = loadConfig({
      CONVEYOR_TRANSFORM_MAX_BLUR: '20',
      CONVEYOR_TRANSFORM_MAX_SHARPEN: '2',
      CONVEYOR_TRANSFORM_MAX_OPTIONS_LENGTH: '64',
    });
    const limits = transformLimits(config);
    assert.equal(limits.maxBlur, 20);
    assert.equal(limits.maxSharpen, 2);
    assert.equal(limits.maxOptionsLength, 64);
  });

  it('shows parsed settings as the text they were given', () => {
    const shown = redactedConfig(
      loadConfig({ CONVEYOR_INGEST_ALLOW_ADDRESSES: '127.0.0.1/32', CONVEYOR_METRICS_PORT: '9100' }),
    );
    assert.equal(shown['ingestAllowAddresses'], '127.0.0.1/32');
    assert.equal(shown['metricsPort'], '9100');
    assert.equal(shown['ingestDenyHosts'], DEFAULT_DENY_HOSTS.join(','));
    assert.equal(shown['workerLanes'], undefined);
    assert.doesNotThrow(() => JSON.stringify(shown));
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
