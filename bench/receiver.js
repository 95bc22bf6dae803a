#!/usr/bin/env node
// Loopback Web Push receiver for the davpush benchmarks (plain http on 127.0.0.1).
//
//   node bench/receiver.js --port 0 [--latency-ms 50] [--record] [--port-file FILE]
//
// Every POST that is not a control path is a "push": it is answered 201 with an
// empty body (keep-alive on), after --latency-ms of added latency (setTimeout)
// when set. The receipt time is taken when the request body has fully arrived.
//
// Control paths (never counted as pushes):
//   GET  /_stats          {"count", "first", "last", "bytes"}  (times: Unix ms, sub-ms precision)
//   GET  /_wait?n=N&timeout_ms=T  answers as soon as count >= N (or at the timeout) with the stats
//   POST /_reset          zero the counters and drop the records
//   GET  /_records        with --record: [[unix_ms, path, body_base64], ...] in arrival order
//
// The chosen port is printed as "PORT <n>" on stdout (and written to --port-file).
'use strict';
const http = require('http');
const fs = require('fs');
const { performance } = require('perf_hooks');

const args = process.argv.slice(2);
function option(name, fallback) {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
}
const port = parseInt(option('--port', '0'), 10);
const latencyMs = parseFloat(option('--latency-ms', '0'));
const record = args.includes('--record');
const portFile = option('--port-file', '');

const origin = performance.timeOrigin;
const now = () => origin + performance.now(); // wall clock, sub-millisecond

let count = 0, first = 0, last = 0, bytes = 0;
let records = [];
let waiters = [];

function stats() {
  return { count, first, last, bytes };
}

function sendJson(res, status, value) {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function wakeWaiters() {
  if (!waiters.length) return;
  const still = [];
  for (const w of waiters) {
    if (count >= w.n) { clearTimeout(w.timer); sendJson(w.res, 200, stats()); } else still.push(w);
  }
  waiters = still;
}

function answerPush(res) {
  res.writeHead(201, { 'Content-Length': '0' });
  res.end();
}

const server = http.createServer((req, res) => {
  const url = req.url;
  if (url.charCodeAt(1) === 95 /* '_' */) {
    const [path, query] = url.split('?');
    const params = new URLSearchParams(query || '');
    req.resume();
    if (req.method === 'GET' && path === '/_stats') return sendJson(res, 200, stats());
    if (req.method === 'POST' && path === '/_reset') {
      count = 0; first = 0; last = 0; bytes = 0; records = [];
      return sendJson(res, 200, stats());
    }
    if (req.method === 'GET' && path === '/_records') return sendJson(res, 200, records);
    if (req.method === 'GET' && path === '/_wait') {
      const n = parseInt(params.get('n') || '0', 10);
      if (count >= n) return sendJson(res, 200, stats());
      const timeout = parseInt(params.get('timeout_ms') || '60000', 10);
      const w = { n, res, timer: null };
      w.timer = setTimeout(() => { waiters = waiters.filter((x) => x !== w); sendJson(res, 200, stats()); }, timeout);
      waiters.push(w);
      return;
    }
    return sendJson(res, 404, { error: 'unknown control path' });
  }
  const chunks = record ? [] : null;
  let size = 0;
  req.on('data', (chunk) => { size += chunk.length; if (chunks) chunks.push(chunk); });
  req.on('end', () => {
    const t = now();
    count += 1; bytes += size;
    if (!first) first = t;
    last = t;
    if (chunks) records.push([t, url, Buffer.concat(chunks).toString('base64')]);
    if (latencyMs > 0) setTimeout(answerPush, latencyMs, res); else answerPush(res);
    wakeWaiters();
  });
});
server.keepAliveTimeout = 60000;
server.headersTimeout = 65000;
server.requestTimeout = 0;
server.maxRequestsPerSocket = 0;
server.listen(port, '127.0.0.1', () => {
  const actual = server.address().port;
  if (portFile) fs.writeFileSync(portFile, String(actual));
  process.stdout.write(`PORT ${actual}\n`);
});
function stop() { server.close(); process.exit(0); }
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
