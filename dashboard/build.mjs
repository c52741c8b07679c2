// Builds the dashboard into server/src/web/assets/, which the server embeds
// (include_bytes!) and git tracks: one ES module bundle, minified, without
// source maps or content hashes, so the same sources always give the same
// bytes and `dashboard/ci.sh` can check the committed files with git diff.
// `--watch` rebuilds on change for development.
import { build, context } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "server", "src", "web", "assets");
mkdirSync(out, { recursive: true });

const options = {
  // Two entries, written as app.js and app.css.
  entryPoints: [join(here, "src", "main.ts"), join(here, "src", "app.css")],
  outdir: out,
  entryNames: "app",
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  sourcemap: false,
  legalComments: "none",
  charset: "utf8",
  logLevel: "info",
};
for (const file of ["index.html", "favicon.svg"]) copyFileSync(join(here, "src", file), join(out, file));
if (process.argv.includes("--watch")) {
  const watcher = await context(options);
  await watcher.watch();
  console.log(`watching; serving files from ${out} needs a rebuilt server (cargo run -p tributary-server -- serve)`);
} else {
  await build(options);
}
