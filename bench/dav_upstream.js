#!/usr/bin/env node
// Canned DAV upstream for bench/gateway.py: answers like Nextcloud's /remote.php/dav/ with fixed
// bodies, as fast as Node can (or after --delay-ms, to stand in for Nextcloud's PHP time).
//
//   node bench/dav_upstream.js [--port 0] [--delay-ms 0] [--serial]   prints "PORT <n>" when listening
//
// --serial answers one request at a time (each after --delay-ms): a Nextcloud-like server whose
// PHP workers are the bottleneck (5.5 ms each ≈ 180 requests/s), rather than a fast canned one.
//
// PROPFIND  → 207: with Depth 0 one calendar (Sabre-style, ~0.9 KB), else a calendar-home
//             listing (the home and 5 calendars, ~4.5 KB)
// REPORT    → 207, a sync-collection answer (10 changed events, ~2.5 KB)
// GET/HEAD  → 200; path ending /64k: 64 KiB, /100m: 100 MiB (streamed), anything else: a small event
// PUT, DELETE, MOVE, COPY, MKCOL, PROPPATCH, POST → body read to the end, 201/204
// OPTIONS   → 200 with DAV and Allow headers
'use strict';
const http = require('http');

const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt; };
const port = parseInt(opt('--port', '0'), 10);
const delayMs = parseFloat(opt('--delay-ms', '0'));
const serial = args.includes('--serial');

const user = 'alice';
function calendar(name, display) {
  return `<d:response><d:href>/remote.php/dav/calendars/${user}/${name}/</d:href><d:propstat><d:prop>` +
    `<d:resourcetype><d:collection/><cal:calendar/></d:resourcetype><d:displayname>${display}</d:displayname>` +
    `<d:owner><d:href>/remote.php/dav/principals/users/${user}/</d:href></d:owner>` +
    `<oc:owner-principal>principals/users/${user}</oc:owner-principal>` +
    `<d:sync-token>http://sabre.io/ns/sync/1234</d:sync-token><cs:getctag>http://sabre.io/ns/sync/1234</cs:getctag>` +
    `<cal:supported-calendar-component-set><cal:comp name="VEVENT"/><cal:comp name="VTODO"/></cal:supported-calendar-component-set>` +
    `<x1:calendar-color xmlns:x1="http://apple.com/ns/ical/">#0082c9</x1:calendar-color>` +
    `</d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>` +
    `<d:propstat><d:prop><d:quota-used-bytes/></d:prop><d:status>HTTP/1.1 404 Not Found</d:status></d:propstat></d:response>`;
}
const NS = 'xmlns:d="DAV:" xmlns:s="http://sabredav.org/ns" xmlns:cal="urn:ietf:params:xml:ns:caldav" ' +
  'xmlns:cs="http://calendarserver.org/ns/" xmlns:oc="http://owncloud.org/ns" xmlns:nc="http://nextcloud.org/ns"';
const PROPFIND_ONE = Buffer.from(`<?xml version="1.0"?>\n<d:multistatus ${NS}>` + calendar('personal', 'Personal') +
  '</d:multistatus>\n');
const PROPFIND = Buffer.from(`<?xml version="1.0"?>\n<d:multistatus ${NS}>` +
  `<d:response><d:href>/remote.php/dav/calendars/${user}/</d:href><d:propstat><d:prop><d:resourcetype><d:collection/></d:resourcetype>` +
  `</d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>` +
  ['personal', 'work', 'family', 'sports', 'holidays'].map((n, i) => calendar(n, `Calendar ${i}`)).join('') +
  '</d:multistatus>\n');
let report = `<?xml version="1.0"?>\n<d:multistatus ${NS}>`;
for (let i = 0; i < 10; i++) {
  report += `<d:response><d:href>/remote.php/dav/calendars/${user}/personal/event-${i}.ics</d:href><d:propstat><d:prop>` +
    `<d:getetag>&quot;${'0123456789abcdef'.repeat(2)}${i}&quot;</d:getetag></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>`;
}
const REPORT = Buffer.from(report + '<d:sync-token>http://sabre.io/ns/sync/1235</d:sync-token></d:multistatus>\n');
const EVENT = Buffer.from('BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//EN\r\nBEGIN:VEVENT\r\nUID:bench-1\r\n' +
  'DTSTAMP:20261201T000000Z\r\nDTSTART:20261201T100000Z\r\nSUMMARY:Bench\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n');
const KIB64 = Buffer.alloc(64 * 1024, 0x61);
const BIG = 100 * 1024 * 1024;

function answer(req, res) {
  const m = req.method;
  if (m === 'PROPFIND' || m === 'REPORT') {
    const body = m === 'REPORT' ? REPORT : req.headers.depth === '0' ? PROPFIND_ONE : PROPFIND;
    res.writeHead(207, { 'Content-Type': 'application/xml; charset=utf-8', 'Content-Length': body.length, DAV: '1, 3, calendar-access' });
    return res.end(body);
  }
  if (m === 'OPTIONS') {
    res.writeHead(200, { DAV: '1, 3, extended-mkcol, access-control, calendarserver-principal-property-search, calendar-access', Allow: 'OPTIONS, GET, HEAD, DELETE, PROPFIND, PUT, PROPPATCH, COPY, MOVE, REPORT', 'Content-Length': 0 });
    return res.end();
  }
  if (m === 'GET' || m === 'HEAD') {
    if (req.url.endsWith('/100m')) {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': BIG });
      if (m === 'HEAD') return res.end();
      let sent = 0;
      const pump = () => {
        while (sent < BIG) {
          const n = Math.min(KIB64.length, BIG - sent);
          sent += n;
          if (!res.write(n === KIB64.length ? KIB64 : KIB64.subarray(0, n))) return res.once('drain', pump);
        }
        res.end();
      };
      return pump();
    }
    const body = req.url.endsWith('/64k') ? KIB64 : EVENT;
    res.writeHead(200, { 'Content-Type': 'text/calendar; charset=utf-8', 'Content-Length': body.length, ETag: '"abc"' });
    return res.end(m === 'HEAD' ? undefined : body);
  }
  res.writeHead(m === 'DELETE' ? 204 : 201, { 'Content-Length': 0, ETag: '"def"' });
  res.end();
}

const queue = [];
let busy = false;
function next() {
  if (busy || queue.length === 0) return;
  busy = true;
  const [req, res] = queue.shift();
  setTimeout(() => { answer(req, res); busy = false; next(); }, delayMs);
}
const server = http.createServer((req, res) => {
  req.on('data', () => {});
  req.on('end', () => {
    if (serial) { queue.push([req, res]); next(); }
    else if (delayMs > 0) setTimeout(() => answer(req, res), delayMs);
    else answer(req, res);
  });
});
server.keepAliveTimeout = 60000;
server.listen(port, '127.0.0.1', () => process.stdout.write(`PORT ${server.address().port}\n`));
