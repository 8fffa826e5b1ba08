// Loads the pinned npm packages from where `npm ci` put them: the directory named by
// TENANTGATE_BROWSER_NODE (the cargo test installs package.json + package-lock.json there,
// under the target directory), so no node_modules ever lives in the source tree.
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const prefix = process.env.TENANTGATE_BROWSER_NODE;
const require = createRequire(prefix ? join(prefix, 'package.json') : import.meta.url);

/** The module `name` (its ESM namespace; a CommonJS module's exports are its `default`). */
export async function load(name) {
  return import(pathToFileURL(require.resolve(name)).href);
}
