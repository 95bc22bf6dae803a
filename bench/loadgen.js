#!/usr/bin/env node
// Receiver capacity check: POST 360-byte bodies to the receiver as fast as possible
// over CONNECTIONS keep-alive connections for SECONDS, then print {"requests", "seconds", "rate"}.
//
//   node bench/loadgen.js URL [CONNECTIONS=64] [SECONDS=5]
'use strict';
const http = require('http');

const url = new URL(process.argv[2]);
const connections = parseInt(process.argv[3] || '64', 10);
const seconds = parseFloat(process.argv[4] || '5');
const body = Buffer.alloc(360, 7);
const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
let done = 0, errors = 0, stopping = false;
const started = process.hrtime.bigint();

function one() {
  if (stopping) return;
  const req = http.request({
    host: url.hostname, port: url.port, path: url.pathname, method: 'POST', agent,
    headers: { 'Content-Length': body.length, 'Content-Encoding': 'aes128gcm', TTL: '86400' },
  }, (res) => { res.resume(); res.on('end', () => { done += 1; one(); }); });
  req.on('error', () => { errors += 1; one(); });
  req.end(body);
}
for (let i = 0; i < connections; i++) one();
setTimeout(() => {
  stopping = true;
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  process.stdout.write(JSON.stringify({ requests: done, errors, seconds: elapsed, rate: done / elapsed }) + '\n');
  process.exit(0);
}, seconds * 1000);
