/**
 * The arrows between the rooms of src/ (docs/architecture.md, "Rooms and arrows"), checked by
 * `npm run check`. Each rule names one statement of that section; a violation fails the run with the
 * rule's name, the importing file and the imported one.
 */

/** Rooms that hold the product's domain: they never see HTTP assembly. */
const DOMAIN = '^src/(assets|delivery|jobs|media|uploads|tenancy)/';
/** Fastify and its plugins, wherever npm put them. */
const FASTIFY = '^node_modules/(fastify|@fastify/[^/]+)/';
/** Files at the root of src/ that every room may use and that use no room. */
const KERNEL = '^src/(glossary|errors|own)[.]ts$';

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'domain-rooms-no-fastify',
      comment: 'Domain rooms never import Fastify or a Fastify plugin: routes in src/http/ adapt them.',
      severity: 'error',
      from: { path: DOMAIN },
      to: { path: FASTIFY },
    },
    {
      name: 'domain-rooms-no-http',
      comment:
        'Domain rooms never import src/http/ (media included): the HTTP assembly depends on them, not ' +
        'the other way round.',
      severity: 'error',
      from: { path: DOMAIN },
      to: { path: '^src/http/' },
    },
    {
      name: 'http-only-from-server-and-cli',
      comment:
        'src/http/ is the Fastify assembly: only server.ts (which builds the app) and the CLI import it. ' +
        'Domain rooms are reported by domain-rooms-no-http.',
      severity: 'error',
      from: { pathNot: [`^src/(http|cli)/`, '^src/server[.]ts$', DOMAIN] },
      to: { path: '^src/http/' },
    },
    {
      name: 'storage-and-db-no-domain',
      comment: 'Storage and the database are I/O below the domain: they import no domain room.',
      severity: 'error',
      from: { path: '^src/(storage|db)/' },
      to: { path: DOMAIN },
    },
    {
      name: 'config-no-rooms',
      comment:
        'The settings table hands typed values to every room, so it imports no domain room, nor ' +
        'storage, db, http or the CLI.',
      severity: 'error',
      from: { path: '^src/config/' },
      to: { path: [DOMAIN, '^src/(storage|db|http|cli)/'] },
    },
    {
      name: 'kernel-no-rooms',
      comment: 'glossary.ts, errors.ts and own.ts are imported by every room, so they import from none.',
      severity: 'error',
      from: { path: KERNEL },
      to: { path: '^src/[^/]+/' },
    },
    {
      name: 'cli-imported-by-nobody',
      comment: 'The CLI is the entry point: nothing imports it.',
      severity: 'error',
      from: { pathNot: '^src/cli/' },
      to: { path: '^src/cli/' },
    },
    {
      name: 'wiring-only-from-cli',
      comment:
        'server.ts and backends.ts assemble the rooms into a process: the CLI imports them (and ' +
        'server.ts imports backends.ts); no room does.',
      severity: 'error',
      from: { pathNot: ['^src/cli/', '^src/server[.]ts$'] },
      to: { path: '^src/(server|backends)[.]ts$' },
    },
    {
      name: 'no-room-cycles',
      comment:
        'Arrows between rooms run one way: no room reaches itself through another. dependency-cruiser ' +
        'counts cycles between folders, a folder with the folders inside it, and a dependency on a ' +
        'file as one on the folder that holds it.',
      severity: 'error',
      scope: 'folder',
      from: { path: '^src/([^/]+)' },
      to: { path: '^src/', pathNot: '^src/$1(/|$)', circular: true },
    },
  ],
  options: {
    // TypeScript's own parser is not available to dependency-cruiser under TypeScript 7; swc reads the
    // same syntax.
    parser: 'swc',
    doNotFollow: { path: '^node_modules/' },
  },
};
