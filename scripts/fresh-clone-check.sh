#!/usr/bin/env bash
# Proves that a clone with nothing beside it passes `npm test`: clones HEAD into an empty temporary
# folder (no shared fixtures folder, no sibling checkout beside it), runs `npm ci` and `npm test` there, and fails if any
# test failed, or was skipped for any reason other than an unreachable service (PostgreSQL,
# Mosquitto: those skips are printed by the run and are failures under CI=true anyway).
#
#   scripts/fresh-clone-check.sh            # uses HEAD of this checkout
#   KEEP=1 scripts/fresh-clone-check.sh     # keeps the temporary folder for a look afterwards
set -euo pipefail

repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
head=$(git -C "$repo" rev-parse --short HEAD)
work=$(mktemp -d "${TMPDIR:-/tmp}/edgeloop-fresh-XXXXXX")
cleanup() { if [ -z "${KEEP:-}" ]; then rm -rf "$work"; else echo "kept $work"; fi; }
trap cleanup EXIT

git clone -q --no-local "$repo" "$work/edgeloop"
cd "$work/edgeloop"
git checkout -q "$head"
if [ -e "$work/shared" ] || [ "$(ls -A "$work")" != "edgeloop" ]; then
  echo "fresh-clone-check: $work is not empty beside the clone" >&2
  exit 1
fi

export ONNXRUNTIME_NODE_INSTALL=skip
npm ci --no-audit --no-fund --loglevel=error
start=$(date +%s)
set +e
npx vitest run --reporter=default --reporter=json --outputFile.json="$work/results.json" 2>&1 | tee "$work/test.log"
status=${PIPESTATUS[0]}
set -e
seconds=$(( $(date +%s) - start ))

node - "$work/results.json" "$work/test.log" "$status" "$head" "$seconds" <<'JS'
const fs = require('node:fs');
const [results, log, status, head, seconds] = process.argv.slice(2);
const report = JSON.parse(fs.readFileSync(results, 'utf8'));
// Files the run itself said it skipped for an unreachable service ("[services] skipped, ...: a, b").
const serviceSkips = new Set();
for (const line of fs.readFileSync(log, 'utf8').split('\n')) {
  const m = /\[services\] skipped, .*?\): (.*)$/.exec(line);
  if (m) for (const file of m[1].split(', ')) serviceSkips.add(file.trim());
}
const root = process.cwd() + '/';
const unexplained = [];
let skipped = 0;
for (const file of report.testResults) {
  const name = file.name.startsWith(root) ? file.name.slice(root.length) : file.name;
  for (const test of file.assertionResults) {
    if (test.status !== 'skipped' && test.status !== 'pending' && test.status !== 'todo') continue;
    skipped++;
    if (!serviceSkips.has(name)) unexplained.push(`${name}: ${test.fullName}`);
  }
}
const failed = report.numFailedTests + (report.numFailedTestSuites ?? 0);
const ok = Number(status) === 0 && failed === 0 && unexplained.length === 0;
console.log(
  `fresh-clone-check ${ok ? 'PASSED' : 'FAILED'}: commit ${head}, clone with nothing beside it: ` +
    `${report.numPassedTests} passed, ${report.numFailedTests} failed, ${skipped} skipped ` +
    `(${skipped - unexplained.length} for an unreachable service, ${unexplained.length} otherwise), ` +
    `${report.testResults.length} test files, npm test ${seconds} s`,
);
for (const line of unexplained.slice(0, 20)) console.log(`  skipped without a service reason: ${line}`);
process.exit(ok ? 0 : 1);
JS
