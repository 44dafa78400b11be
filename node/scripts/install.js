// npm's install step for the mlxq package: puts the native addon at build/mlxq.node. It is taken
// from the repository's build tree (../build/node/mlxq.node) when there, else built there with
// CMake from the repository's sources (offline: everything comes from scripts/setup.sh).
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const pkg = path.resolve(__dirname, '..');
const target = path.join(pkg, 'build', 'mlxq.node');
const repo = path.resolve(pkg, '..');
const built = path.join(repo, 'build', 'node', 'mlxq.node');

function copy() {
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.copyFileSync(built, target + '.tmp');
  fs.renameSync(target + '.tmp', target);
  console.log(`mlxq: native addon ${built} -> ${target}`);
}

if (fs.existsSync(target) && !fs.existsSync(built)) process.exit(0);  // a packed copy: nothing to do
if (!fs.existsSync(built)) {
  if (!fs.existsSync(path.join(repo, 'CMakeLists.txt')))
    throw new Error(`mlxq: no native addon at ${target} and no mlxq source tree at ${repo} to build it from`);
  const run = (args) => execFileSync('cmake', args, { cwd: repo, stdio: 'inherit' });
  if (!fs.existsSync(path.join(repo, 'build', 'CMakeCache.txt')))
    run(['-S', '.', '-B', 'build', '-G', 'Ninja', '-DCMAKE_BUILD_TYPE=Release']);
  run(['--build', 'build', '--target', 'mlxq_node', 'tiny_chat_assets']);
}
copy();
