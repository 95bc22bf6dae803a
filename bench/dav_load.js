#!/usr/bin/env node
// Load generator for bench/gateway.py: one request kind over CONNECTIONS keep-alive connections
// for SECONDS (or COUNT requests), then prints {"requests", "errors", "seconds", "rate", "bytes",
// "statuses"} as one JSON line. Response bodies are read and counted, never kept.
//
//   node bench/dav_load.js URL METHOD CONNECTIONS SECONDS [--count N] [--body-bytes N]
//        [--body-file F] [--header "Name: value"]...
'use strict';
const http = require('http');
const fs = require('fs');

const [urlArg, method, connArg, secondsArg, ...rest] = process.argv.slice(2);
const url = new URL(urlArg);
const connections = parseInt(connArg, 10);
const seconds = parseFloat(secondsArg);
const headers = {};
let body = null, count = Infinity;
for (let i = 0; i < rest.length; i += 2) {
  const [flag, value] = [rest[i], rest[i + 1]];
  if (flag === '--header') { const at = value.indexOf(':'); headers[value.slice(0, at).trim()] = value.slice(at + 1).trim(); }
  else if (flag === '--body-bytes') body = Buffer.alloc(parseInt(value, 10), 0x62);
  else if (flag === '--body-file') body = fs.readFileSync(value);
  else if (flag === '--count') count = parseInt(value, 10);
}
if (body) headers['Content-Length'] = body.length;
const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
let done = 0, started = 0, errors = 0, bytes = 0, stopping = false;
const statuses = {};
const t0 = process.hrtime.bigint();

function finish() {
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  process.stdout.write(JSON.stringify({ requests: done, errors, seconds: elapsed, rate: done / elapsed, bytes, statuses }) + '\n');
  process.exit(0);
}
function one() {
  if (stopping || started >= count) { if (done + errors >= started) finish(); return; }
  started += 1;
  const req = http.request({ host: url.hostname, port: url.port, path: url.pathname + url.search, method, agent, headers }, (res) => {
    statuses[res.statusCode] = (statuses[res.statusCode] || 0) + 1;
    let size = 0;
    res.on('data', (d) => { size += d.length; });
    res.on('end', () => { done += 1; bytes += size; one(); });
    res.on('error', () => { errors += 1; one(); });
  });
  req.on('error', () => { errors += 1; one(); });
  req.end(body || undefined);
}
for (let i = 0; i < connections; i++) one();
if (Number.isFinite(seconds) && seconds > 0) setTimeout(() => { stopping = true; finish(); }, seconds * 1000);
