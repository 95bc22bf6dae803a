#!/usr/bin/env node
// Loopback Web Push receiver over TLS that speaks HTTP/2 and HTTP/1.1 (ALPN picks), for bench/http2.py.
//
//   node bench/h2_receiver.js --cert CERT.pem --key KEY.pem [--latency-ms 50] [--max-streams 100]
//
// Every POST is a push, answered 201 with an empty body after --latency-ms (setTimeout). HTTP/2
// sessions advertise --max-streams concurrent streams (Google's and Mozilla's front ends say 100).
// Control paths are on a separate plain-http port: GET /_stats {"count", "first", "last", "tcp",
// "h2_sessions", "h1_requests", "h2_requests"}, GET /_wait?n=N&timeout_ms=T, POST /_reset.
// Prints "PORT <tls port>" and "CONTROL <control port>" on stdout.
'use strict';
const http = require('http');
const http2 = require('http2');
const fs = require('fs');
const { performance } = require('perf_hooks');

const args = process.argv.slice(2);
function option(name, fallback) {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
}
const latencyMs = parseFloat(option('--latency-ms', '0'));
const maxStreams = parseInt(option('--max-streams', '100'), 10);
const now = () => performance.timeOrigin + performance.now();

let count = 0, first = 0, last = 0, tcp = 0, sessions = 0, h1 = 0, h2 = 0;
let waiters = [];
const stats = () => ({ count, first, last, tcp, h2_sessions: sessions, h1_requests: h1, h2_requests: h2 });

function sendJson(res, value) {
  const body = JSON.stringify(value);
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function wakeWaiters() {
  const still = [];
  for (const w of waiters) {
    if (count >= w.n) { clearTimeout(w.timer); sendJson(w.res, stats()); } else still.push(w);
  }
  waiters = still;
}

function answer(res) {
  res.writeHead(201, { 'content-length': '0' });
  res.end();
}

const server = http2.createSecureServer({
  cert: fs.readFileSync(option('--cert')), key: fs.readFileSync(option('--key')),
  allowHTTP1: true, settings: { maxConcurrentStreams: maxStreams },
}, (req, res) => {
  req.on('data', () => {});
  req.on('end', () => {
    const t = now();
    count += 1;
    if (req.httpVersionMajor === 2) h2 += 1; else h1 += 1;
    if (!first) first = t;
    last = t;
    if (latencyMs > 0) setTimeout(answer, latencyMs, res); else answer(res);
    if (waiters.length) wakeWaiters();
  });
});
server.on('connection', () => { tcp += 1; });
server.on('session', () => { sessions += 1; });
server.keepAliveTimeout = 60000;
server.setTimeout(0);

const control = http.createServer((req, res) => {
  const [path, query] = req.url.split('?');
  const params = new URLSearchParams(query || '');
  req.resume();
  if (path === '/_stats') return sendJson(res, stats());
  if (path === '/_reset') {
    count = 0; first = 0; last = 0; tcp = 0; sessions = 0; h1 = 0; h2 = 0;
    return sendJson(res, stats());
  }
  if (path === '/_wait') {
    const n = parseInt(params.get('n') || '0', 10);
    if (count >= n) return sendJson(res, stats());
    const w = { n, res, timer: null };
    w.timer = setTimeout(() => { waiters = waiters.filter((x) => x !== w); sendJson(res, stats()); },
      parseInt(params.get('timeout_ms') || '60000', 10));
    waiters.push(w);
    return;
  }
  res.writeHead(404); res.end();
});

server.listen(0, '127.0.0.1', () => {
  control.listen(0, '127.0.0.1', () => {
    process.stdout.write(`PORT ${server.address().port}\nCONTROL ${control.address().port}\n`);
  });
});
function stop() { process.exit(0); }
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
