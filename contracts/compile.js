#!/usr/bin/env node
// Compiles contracts/src/**/*.sol with solcjs (standard JSON) and prints one JSON object
// {ContractName: artifact} on stdout. contracts/compile.py owns writing and checking build/,
// so this script stays a pure function of the sources and the pinned compiler.
"use strict";

const fs = require("fs");
const path = require("path");
const crypto = require("crypto");
const solc = require("solc");

const SRC_DIR = path.join(__dirname, "src");

// Shanghai is the newest fork Ganache 7 supports; Anvil and py-evm run it too, so one bytecode
// serves all three chains.
const SETTINGS = {
  evmVersion: "shanghai",
  optimizer: { enabled: true, runs: 200 },
};

function listSources(dir) {
  const found = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) found.push(...listSources(full));
    else if (entry.name.endsWith(".sol")) found.push(full);
  }
  return found;
}

function main() {
  const sources = {};
  const shas = {};
  for (const file of listSources(SRC_DIR).sort()) {
    // POSIX-style unit names keep the metadata hash, hence the bytecode, platform independent.
    const unit = path.relative(SRC_DIR, file).split(path.sep).join("/");
    const content = fs.readFileSync(file, "utf8");
    sources[unit] = { content };
    shas[unit] = crypto.createHash("sha256").update(content, "utf8").digest("hex");
  }

  const input = {
    language: "Solidity",
    sources,
    settings: {
      ...SETTINGS,
      outputSelection: {
        "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] },
      },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (output.errors || []).filter((e) => e.severity === "error");
  for (const e of output.errors || []) process.stderr.write(e.formattedMessage + "\n");
  if (errors.length) process.exit(1);

  const artifacts = {};
  for (const unit of Object.keys(output.contracts).sort()) {
    for (const [name, out] of Object.entries(output.contracts[unit])) {
      if (!out.evm.bytecode.object) continue; // interfaces and abstract contracts
      if (artifacts[name]) {
        process.stderr.write(`duplicate contract name ${name} in ${unit}\n`);
        process.exit(1);
      }
      artifacts[name] = {
        abi: out.abi,
        bytecode: "0x" + out.evm.bytecode.object,
        deployedBytecode: "0x" + out.evm.deployedBytecode.object,
        compiler: "solc-js " + solc.version(),
        settings: SETTINGS,
        source: unit,
        sourceSha256: shas[unit],
      };
    }
  }
  process.stdout.write(JSON.stringify(artifacts));
}

main();
