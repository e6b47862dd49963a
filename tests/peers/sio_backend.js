#!/usr/bin/env node
// Socket.IO 4.8 backend modelled on a health-records vendor's real-time API.
//
// Usage: node sio_backend.js <port|0> [--secret S] [--ping-interval ms] [--ping-timeout ms]
//                                     [--max-payload bytes]
// Listens on 127.0.0.1 only and prints `READY <port>` on stdout once listening (port 0 picks a
// free port; the printed one is the real one). Diagnostics go to stderr.
//
// Socket.IO (namespaces `/` and `/admin`, same middleware and handlers on both):
//   - auth: `socket.handshake.auth.token` must be an HS256 JWT signed with the secret
//     (default `test-secret`); otherwise the CONNECT fails with message `invalid token` and
//     data `{reason:'jwt'}`. A valid socket joins room `user:<sub>`.
//   - `message_created` / `message_updated` / `message_deleted`: re-emitted with the same args
//     to every socket of the namespace, the sender included; ack (if asked) `{ok:true, event}`.
//   - `echo`: re-emitted to the sender only as `echo` with the same args (binary included);
//     ack (if asked) `{ok:true, event, args}`.
//   - `no_ack`: recorded, never acked (for ack timeouts).
//   - `registerUser` / `sendMessageToChannel`: the SMS vendor's procedures as a Socket.IO
//     backend would serve them: registerUser acks {error: '{"urn":"urn:session:sio-<n>"}'}
//     (the guide's answer lives in SocketCluster's first callback slot), and
//     sendMessageToChannel {text, userUrn} emits event <urn> {text, from:userUrn, to:<urn>}
//     to the sender and acks {ok:true}.
//   - `flood`: only counted (see GET /control/counts), for load from a test.
//   - any other event: ack (if asked) `{ok:true, event, args}`.
//   Every client event is recorded (see GET /control/received).
//
// HTTP control API (same port, paths under /control/; bodies are JSON). Binary values are
// written as {"$bin":"<base64>"} both ways.
//   POST /control/emit            {event, args:[...], to?:"<sub>", namespace?:"/admin",
//                                  ack?:true, timeoutMs?:n}  -> {ok:true}
//                                 (with ack: {ok:true, responses:[...]} or {ok:false, error})
//   GET  /control/received        -> [{sub, event, args, namespace, id}]
//   GET  /control/counts          -> {<event>: n} of counted-only events
//   POST /control/reset           clears the recorded events -> {ok:true}
//   GET  /control/clients         -> [{id, sub, namespace, transport, cookie, origin}]
//   POST /control/disconnect-all  {namespace?} disconnects every socket -> {ok:true, count}
'use strict';
const http = require('http');
const { Server } = require('socket.io');
const jwt = require('jsonwebtoken');

function parseArgs(argv) {
  const opts = { port: 0, secret: 'test-secret', pingInterval: 25000, pingTimeout: 20000, maxPayload: 1e6 };
  const rest = argv.slice(2);
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    const val = () => {
      if (i + 1 >= rest.length) throw new Error(`${a} needs a value`);
      return rest[++i];
    };
    if (a === '--secret') opts.secret = val();
    else if (a === '--ping-interval') opts.pingInterval = Number(val());
    else if (a === '--ping-timeout') opts.pingTimeout = Number(val());
    else if (a === '--max-payload') opts.maxPayload = Number(val());
    else if (/^\d+$/.test(a)) opts.port = Number(a);
    else throw new Error(`unknown argument ${a}`);
  }
  return opts;
}

const opts = parseArgs(process.argv);
const log = (...a) => console.error(new Date().toISOString(), ...a);

// --- binary <-> JSON ----------------------------------------------------------------------
function toJson(v) {
  if (Buffer.isBuffer(v)) return { $bin: v.toString('base64') };
  if (v instanceof ArrayBuffer) return { $bin: Buffer.from(v).toString('base64') };
  if (ArrayBuffer.isView(v)) return { $bin: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') };
  if (Array.isArray(v)) return v.map(toJson);
  if (v && typeof v === 'object') {
    const o = {};
    for (const [k, x] of Object.entries(v)) o[k] = toJson(x);
    return o;
  }
  return v;
}
function fromJson(v) {
  if (Array.isArray(v)) return v.map(fromJson);
  if (v && typeof v === 'object') {
    const keys = Object.keys(v);
    if (keys.length === 1 && keys[0] === '$bin' && typeof v.$bin === 'string') return Buffer.from(v.$bin, 'base64');
    const o = {};
    for (const [k, x] of Object.entries(v)) o[k] = fromJson(x);
    return o;
  }
  return v;
}

// --- state ---------------------------------------------------------------------------------
const received = [];
const counts = {};
let sessions = 0;
const BROADCAST_EVENTS = new Set(['message_created', 'message_updated', 'message_deleted']);
const NAMESPACES = ['/', '/admin'];

// --- HTTP control API ----------------------------------------------------------------------
function reply(res, status, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function readJson(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const s = Buffer.concat(chunks).toString('utf8').trim();
      if (!s) return resolve({});
      try { resolve(JSON.parse(s)); } catch (e) { reject(e); }
    });
    req.on('error', reject);
  });
}

async function control(req, res) {
  const url = new URL(req.url, 'http://127.0.0.1');
  const route = `${req.method} ${url.pathname}`;
  try {
    switch (route) {
      case 'POST /control/emit': {
        const b = await readJson(req);
        if (typeof b.event !== 'string') return reply(res, 400, { ok: false, error: 'event must be a string' });
        const nsp = io.of(b.namespace || '/');
        const target = b.to !== undefined && b.to !== null ? nsp.to(`user:${b.to}`) : nsp;
        const args = fromJson(Array.isArray(b.args) ? b.args : []);
        if (b.ack) {
          target.timeout(Number(b.timeoutMs) || 5000).emit(b.event, ...args, (err, responses) => {
            if (err) reply(res, 200, { ok: false, error: err.message, responses: toJson(responses || []) });
            else reply(res, 200, { ok: true, responses: toJson(responses) });
          });
          return;
        }
        target.emit(b.event, ...args);
        log('control emit', b.namespace || '/', b.to === undefined ? '*' : b.to, b.event);
        return reply(res, 200, { ok: true });
      }
      case 'GET /control/counts':
        return reply(res, 200, counts);
      case 'GET /control/received':
        return reply(res, 200, received);
      case 'POST /control/reset':
        received.length = 0;
        return reply(res, 200, { ok: true });
      case 'GET /control/clients': {
        const out = [];
        for (const n of NAMESPACES) {
          for (const s of io.of(n).sockets.values()) {
            const h = s.handshake.headers;
            out.push({ id: s.id, sub: s.data.sub, namespace: n, transport: s.conn.transport.name,
              cookie: h.cookie || null, origin: h.origin || null });
          }
        }
        return reply(res, 200, out);
      }
      case 'POST /control/disconnect-all': {
        const b = await readJson(req);
        let count = 0;
        for (const n of b.namespace ? [b.namespace] : NAMESPACES) {
          count += io.of(n).sockets.size;
          io.of(n).disconnectSockets(true);
        }
        log('control disconnect-all', count);
        return reply(res, 200, { ok: true, count });
      }
      default:
        return reply(res, 404, { ok: false, error: `no route ${route}` });
    }
  } catch (e) {
    return reply(res, 400, { ok: false, error: String(e && e.message || e) });
  }
}

// socket.io's engine takes over the server's `request` listeners and only passes on requests
// outside its path (/socket.io/), so this handler never sees Socket.IO traffic.
const httpServer = http.createServer((req, res) => {
  if (req.url.startsWith('/control/')) return void control(req, res);
  reply(res, 404, { ok: false, error: 'not found' });
});

const io = new Server(httpServer, {
  pingInterval: opts.pingInterval,
  pingTimeout: opts.pingTimeout,
  maxHttpBufferSize: opts.maxPayload,
  cors: { origin: '*' },
});

function authMiddleware(socket, next) {
  const token = socket.handshake.auth && socket.handshake.auth.token;
  try {
    if (typeof token !== 'string' || !token) throw new Error('missing token');
    const claims = jwt.verify(token, opts.secret, { algorithms: ['HS256'] });
    if (claims.sub === undefined || claims.sub === null) throw new Error('token has no sub');
    socket.data.sub = String(claims.sub);
    socket.data.claims = claims;
    next();
  } catch (e) {
    log('auth failed', socket.nsp.name, e.message);
    next(Object.assign(new Error('invalid token'), { data: { reason: 'jwt' } }));
  }
}

function onConnection(socket) {
  const nsp = socket.nsp;
  const sub = socket.data.sub;
  socket.join(`user:${sub}`);
  log('connect', nsp.name, socket.id, 'sub', sub, 'transport', socket.conn.transport.name);
  socket.conn.on('upgrade', (t) => log('upgrade', nsp.name, socket.id, t.name));

  socket.onAny((event, ...args) => {
    const ack = args.length && typeof args[args.length - 1] === 'function' ? args.pop() : null;
    if (event === 'flood') {
      counts.flood = (counts.flood || 0) + 1;
      return;
    }
    received.push({ sub, event, args: toJson(args), namespace: nsp.name, id: socket.id });
    log('event', nsp.name, socket.id, event, ack ? '(ack)' : '');
    if (event === 'no_ack') return;
    if (event === 'registerUser') {
      socket.data.urn = `urn:session:sio-${++sessions}`;
      if (ack) ack({ error: JSON.stringify({ urn: socket.data.urn }) });
      return;
    }
    if (event === 'sendMessageToChannel') {
      const m = args[0] || {};
      const urn = socket.data.urn || m.userUrn;
      socket.emit(urn, { text: m.text, from: m.userUrn, to: urn });
      if (ack) ack({ ok: true });
      return;
    }
    if (BROADCAST_EVENTS.has(event)) {
      nsp.emit(event, ...args);
      if (ack) ack({ ok: true, event });
      return;
    }
    if (event === 'echo') socket.emit('echo', ...args);
    if (ack) ack({ ok: true, event, args });
  });
  socket.on('disconnect', (reason) => log('disconnect', nsp.name, socket.id, reason));
}

for (const n of NAMESPACES) {
  io.of(n).use(authMiddleware);
  io.of(n).on('connection', onConnection);
}

httpServer.on('error', (e) => {
  log('listen error', e.message);
  process.exit(1);
});
httpServer.listen(opts.port, '127.0.0.1', () => {
  const { port } = httpServer.address();
  process.stdout.write(`READY ${port}\n`);
  log(`socket.io ${require('socket.io/package.json').version} listening on 127.0.0.1:${port}`);
});

function shutdown(sig) {
  log('signal', sig);
  io.close();
  httpServer.close();
  setTimeout(() => process.exit(0), 200).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
