/**
 * The two words a tus client and our server must agree on, in a module that imports nothing, so that the
 * CLI's client (src/cli/resumable-upload.ts) takes them without loading the server's upload room.
 */

/** Where the tus routes live. */
export const UPLOADS_PATH = '/api/v1/uploads';

/** tus 1.0 core: the protocol version every request and response names in Tus-Resumable. */
export const TUS_VERSION = '1.0.0';
