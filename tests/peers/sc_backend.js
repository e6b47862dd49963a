#!/usr/bin/env node
// SocketCluster backend modelled on an SMS vendor's real-time API (a socketCluster v9 server:
// the client registers with `registerUser`, subscribes to the channel named by its session urn
// and sends with `sendMessageToChannel`). Runs either generation of the server library:
// socketcluster-server 9.1.3 (legacy protocol 1 only: `#1`/`#2` pings) or 20.0.1 (npm alias
// `sc-server-20`; protocol 2 by default: empty-string pings, or protocol 1 with --protocol 1).
//
// Usage: node sc_backend.js <port|0> --version 9|20 [--protocol 1|2] [--ping-interval ms]
//                           [--ping-timeout ms] [--ack-timeout ms] [--secret S] [--batch]
// Listens on 127.0.0.1 only and prints `READY <port>` on stdout once listening (port 0 picks a
// free port; the printed one is the real one). Diagnostics go to stderr. WebSocket path
// `/socketcluster/`, no subprotocol. Defaults: secret `test-secret`, the libraries' own ping
// interval (8000 ms), ping timeout (v9 20000 ms, v20 30000 ms) and ack timeout (10000 ms).
// --batch (v20 only): socket.startBatching() on every connection, so everything the server
// sends after the handshake answer goes out as JSON arrays, flushed every 50 ms.
//
// Auth: SocketCluster's own auth engine with authKey = the secret, HS256. A `#handshake` or
// `#authenticate` token signed with the secret authenticates the socket (socket.authToken is
// its payload); a bad or expired one is a soft error (handshake answer carries authError,
// then `#removeAuthToken`), as the library does.
//
// Procedures (each works as an RPC, i.e. with a cid, and as a plain transmit, which gets no
// answer). "answers E / D" means the error slot / the data slot of the reply:
//   registerUser {}            a new session urn `urn:session:<n>` (n counts from 1) for this
//                              socket; answers, as the vendor's backend does, in the FIRST
//                              (error) slot: a JSON *string* '{"urn":"urn:session:<n>"}'
//                              (wire: {"rid":N,"error":"{\"urn\":\"urn:session:1\"}"}); the
//                              vendor's client reads it as `(_response) => JSON.parse(_response)`
//   sendMessageToChannel {text, userUrn}
//                              publishes {text, from:userUrn, to:<urn>} on channel <urn> (the
//                              sender's registered urn, else userUrn); answers D {ok:true}
//   echo <any>                 answers D with the same data
//   fail <any>, reject <any>   answers E {name:'FailError', message:'failed on purpose'}
//                              (`reject` because socketcluster-client 9 keeps `fail` as a
//                              local event name: its socket.emit('fail') never goes out)
//   slow <any>                 never answers (for ack timeouts)
//   login {sub, ack?:bool}     socket.setAuthToken({sub}) (signed with the secret, 1 day);
//                              ack:true makes the server ask the client to acknowledge the
//                              token (`#setAuthToken` then carries a cid; v9: a callback, v20:
//                              rejectOnFailedDelivery) and answer only once it did; answers D
//                              {ok:true} after the `#setAuthToken` frame went out
//   logout {ack?:bool}         socket.deauthenticate() (`#removeAuthToken`, with a cid when
//                              ack:true); answers D {ok:true}
//   anything else              recorded only, never answered
// Every received packet is recorded (GET /control/received), pongs excepted.
//
// HTTP control API (same port, paths under /control/; bodies are JSON; a socket is named by
// its id or by its registered urn):
//   POST /control/publish      {channel, data}  exchange publish (v9 exchange.publish, v20
//                              exchange.transmitPublish) -> {ok:true}
//   POST /control/emit         {event, data?, to?:socket, ack?:bool, timeoutMs?}
//                              to one socket or every connected one: v9 socket.emit, v20
//                              socket.transmit / socket.invoke (with ack) -> {ok:true, count}
//                              (with ack: {ok:true, count, responses:[{id, error?, data?}]})
//   POST /control/kick-out     {channel, socket?, message?:'kicked out'}  socket.kickOut on that
//                              socket, or on every socket subscribed to channel -> {ok, count}
//   POST /control/disconnect   {socket?, code?:1000, reason?}  socket.disconnect(code, reason)
//                              (v9 first sends {"event":"#disconnect","data":{code, data}})
//                              on one or every socket -> {ok:true, count}
//   GET  /control/received     -> [{id, urn, event, data, cid?, batch?}] every packet with an
//                                 event; [{id, urn, rid, data?, error?}] answers to the
//                                 server's RPCs; [{id, urn, raw}] non-JSON text
//   GET  /control/clients      -> [{id, urn, authToken, subscriptions, url, state}] connected
//   GET  /control/closures     -> [{id, urn, code, reason, phase:"disconnect"|"connectAbort"}]
//   POST /control/reset        clears received and closures -> {ok:true}
'use strict';
const http = require('http');

function parseArgs(argv) {
  const opts = { port: 0, version: 0, protocol: 0, secret: 'test-secret', pingInterval: 0, pingTimeout: 0, ackTimeout: 0, batch: false };
  const rest = argv.slice(2);
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    const val = () => {
      if (i + 1 >= rest.length) throw new Error(`${a} needs a value`);
      return rest[++i];
    };
    if (a === '--version') opts.version = Number(val());
    else if (a === '--protocol') opts.protocol = Number(val());
    else if (a === '--secret') opts.secret = val();
    else if (a === '--ping-interval') opts.pingInterval = Number(val());
    else if (a === '--ping-timeout') opts.pingTimeout = Number(val());
    else if (a === '--ack-timeout') opts.ackTimeout = Number(val());
    else if (a === '--batch') opts.batch = true;
    else if (/^\d+$/.test(a)) opts.port = Number(a);
    else throw new Error(`unknown argument ${a}`);
  }
  if (opts.version !== 9 && opts.version !== 20) throw new Error('--version must be 9 or 20');
  if (!opts.protocol) opts.protocol = opts.version === 9 ? 1 : 2;
  if (opts.protocol !== 1 && opts.protocol !== 2) throw new Error('--protocol must be 1 or 2');
  if (opts.version === 9 && opts.protocol !== 1) throw new Error('socketcluster-server 9 speaks protocol 1 only');
  if (opts.version === 9 && opts.batch) throw new Error('--batch is a socketcluster-server 20 feature');
  return opts;
}

const opts = parseArgs(process.argv);
const log = (...a) => console.error(new Date().toISOString(), ...a);

// --- state ---------------------------------------------------------------------------------
const received = [];
const closures = [];
let sessionSeq = 0;
const urns = new Map(); // socket id -> urn

function record(socket, message, pong) {
  if (typeof message !== 'string') message = Buffer.isBuffer(message) ? message.toString('utf8') : String(message);
  if (message === pong) return;
  const base = { id: socket.id, urn: urns.get(socket.id) || null };
  let packet;
  try {
    packet = JSON.parse(message);
  } catch (_) {
    received.push({ ...base, raw: message });
    return;
  }
  const one = (p, batch) => {
    if (p && typeof p === 'object' && typeof p.event === 'string') {
      const r = { ...base, event: p.event, data: p.data === undefined ? null : p.data };
      if (p.cid !== undefined) r.cid = p.cid;
      if (batch) r.batch = true;
      received.push(r);
    } else if (p && typeof p === 'object' && p.rid !== undefined) {
      const r = { ...base, rid: p.rid };
      if (p.data !== undefined) r.data = p.data;
      if (p.error !== undefined) r.error = p.error;
      if (batch) r.batch = true;
      received.push(r);
    } else {
      received.push({ ...base, raw: message });
    }
  };
  if (Array.isArray(packet)) packet.forEach((p) => one(p, true));
  else one(packet, false);
}

// --- the vendor's procedures (shared by both server generations) ---------------------------
// `srv` adapts one library: publish(channel, data), setAuthToken(socket, token, ack),
// deauthenticate(socket, ack). `reply(err, data)` is null for a transmit (no cid).
const FAIL = { name: 'FailError', message: 'failed on purpose' };

async function handleProcedure(srv, socket, event, data, reply) {
  const answer = (err, d) => {
    if (reply) reply(err, d);
  };
  try {
    switch (event) {
      case 'registerUser': {
        const urn = `urn:session:${++sessionSeq}`;
        urns.set(socket.id, urn);
        log('registerUser', socket.id, urn);
        return answer(JSON.stringify({ urn }));
      }
      case 'sendMessageToChannel': {
        const d = data || {};
        const urn = urns.get(socket.id) || d.userUrn;
        if (typeof urn !== 'string') return answer({ name: 'InvalidArgumentsError', message: 'no urn: registerUser first or send userUrn' });
        await srv.publish(urn, { text: d.text, from: d.userUrn, to: urn });
        return answer(null, { ok: true });
      }
      case 'echo':
        return answer(null, data);
      case 'fail':
      case 'reject':
        return answer({ ...FAIL });
      case 'slow':
        return;
      case 'login': {
        const d = data || {};
        if (d.sub === undefined || d.sub === null) return answer({ name: 'InvalidArgumentsError', message: 'login needs a sub' });
        await srv.setAuthToken(socket, { sub: String(d.sub) }, !!d.ack);
        return answer(null, { ok: true });
      }
      case 'logout':
        await srv.deauthenticate(socket, !!(data && data.ack));
        return answer(null, { ok: true });
      default:
        return;
    }
  } catch (e) {
    log('procedure failed', event, e);
    return answer({ name: e.name || 'Error', message: String(e.message || e) });
  }
}
const PROCEDURES = ['registerUser', 'sendMessageToChannel', 'echo', 'fail', 'reject', 'slow', 'login', 'logout'];

const tick = () => new Promise((r) => setImmediate(r));

// --- socketcluster-server 9 ------------------------------------------------------------------
function startV9(httpServer) {
  const scs = require('socketcluster-server');
  const o = { path: '/socketcluster/', wsEngine: 'ws', authKey: opts.secret, authAlgorithm: 'HS256' };
  if (opts.pingInterval) o.pingInterval = opts.pingInterval;
  if (opts.pingTimeout) o.pingTimeout = opts.pingTimeout;
  if (opts.ackTimeout) o.ackTimeout = opts.ackTimeout;
  const sc = scs.attach(httpServer, o);
  sc.on('error', (e) => log('server error', e));
  sc.on('warning', (e) => log('server warning', e && e.message));
  const srv = {
    version: require('socketcluster-server/package.json').version,
    publish: (channel, data) => new Promise((resolve, reject) => {
      sc.exchange.publish(channel, data, (err) => (err ? reject(err) : resolve()));
    }),
    setAuthToken: (socket, token, ack) => new Promise((resolve, reject) => {
      if (ack) socket.setAuthToken(token, null, (err) => (err ? reject(err) : resolve()));
      else {
        socket.setAuthToken(token);
        resolve();
      }
    }),
    deauthenticate: (socket, ack) => new Promise((resolve, reject) => {
      if (ack) socket.deauthenticate((err) => (err ? reject(err) : resolve()));
      else {
        socket.deauthenticate();
        resolve();
      }
    }),
    sockets: () => Object.values(sc.clients),
    // v9's kickOut unsubscribes the socket in the broker but leaves it in
    // socket.channelSubscriptions: ask the broker.
    subscriptions: (socket) => socket.subscriptions().filter((ch) => {
      const subs = sc.brokerEngine._clientSubscribers && sc.brokerEngine._clientSubscribers[ch];
      return !!(subs && subs[socket.id]);
    }),
    emit: (socket, event, data, ack, timeoutMs) => new Promise((resolve) => {
      if (!ack) {
        socket.emit(event, data);
        return resolve(null);
      }
      // The v9 server socket times out after the server's ackTimeout; timeoutMs is ignored.
      void timeoutMs;
      socket.emit(event, data, (err, d) => resolve(err ? { id: socket.id, error: errorJson(err) } : { id: socket.id, data: d === undefined ? null : d }));
    }),
    kickOut: (socket, channel, message) => new Promise((resolve) => socket.kickOut(channel, message, () => resolve())),
    disconnect: (socket, code, reason) => socket.disconnect(code, reason),
  };
  sc.on('handshake', (socket) => {
    socket.on('message', (m) => record(socket, m, '#2'));
    socket.on('close', (code, reason) => {
      const phase = socket.__connected ? 'disconnect' : 'connectAbort';
      closures.push({ id: socket.id, urn: urns.get(socket.id) || null, code, reason: reason === undefined ? null : reason, phase });
      log('close', socket.id, code, reason, phase);
    });
  });
  sc.on('connection', (socket, status) => {
    socket.__connected = true;
    log('connection', socket.id, 'authenticated', status.isAuthenticated, socket.request && socket.request.url);
    for (const name of PROCEDURES) {
      socket.on(name, (data, res) => {
        void handleProcedure(srv, socket, name, data, (err, d) => res(err, d));
      });
    }
    socket.on('subscribe', (channel) => log('subscribe', socket.id, channel));
  });
  return srv;
}

// --- socketcluster-server 20 -----------------------------------------------------------------
function startV20(httpServer) {
  const scs = require('sc-server-20');
  const o = { path: '/socketcluster/', protocolVersion: opts.protocol, authKey: opts.secret, authAlgorithm: 'HS256' };
  if (opts.pingInterval) o.pingInterval = opts.pingInterval;
  if (opts.pingTimeout) o.pingTimeout = opts.pingTimeout;
  if (opts.ackTimeout) o.ackTimeout = opts.ackTimeout;
  const ag = scs.attach(httpServer, o);
  const pong = opts.protocol === 1 ? '#2' : '';
  const srv = {
    version: require('sc-server-20/package.json').version,
    publish: (channel, data) => ag.exchange.transmitPublish(channel, data),
    setAuthToken: async (socket, token, ack) => {
      await socket.setAuthToken(token, ack ? { rejectOnFailedDelivery: true } : undefined);
      await tick(); // #setAuthToken goes through the outbound stream; the RPC answer does not
    },
    deauthenticate: async (socket, ack) => {
      await socket.deauthenticate(ack ? { rejectOnFailedDelivery: true } : undefined);
      await tick();
    },
    sockets: () => Object.values(ag.clients),
    subscriptions: (socket) => socket.subscriptions(),
    emit: async (socket, event, data, ack, timeoutMs) => {
      if (!ack) {
        socket.transmit(event, data);
        return null;
      }
      try {
        const d = await socket.invoke(event, data, timeoutMs ? { ackTimeout: timeoutMs } : undefined);
        return { id: socket.id, data: d === undefined ? null : d };
      } catch (err) {
        return { id: socket.id, error: errorJson(err) };
      }
    },
    kickOut: (socket, channel, message) => socket.kickOut(channel, message),
    disconnect: (socket, code, reason) => socket.disconnect(code, reason),
  };
  (async () => {
    for await (const { error } of ag.listener('error')) log('server error', error);
  })();
  (async () => {
    for await (const { warning } of ag.listener('warning')) log('server warning', warning && warning.message);
  })();
  (async () => {
    for await (const { socket } of ag.listener('handshake')) {
      (async () => {
        for await (const { message } of socket.listener('message')) record(socket, message, pong);
      })();
      (async () => {
        for await (const { code, reason } of socket.listener('close')) {
          const phase = socket.__connected ? 'disconnect' : 'connectAbort';
          closures.push({ id: socket.id, urn: urns.get(socket.id) || null, code, reason: reason === undefined ? null : reason, phase });
          log('close', socket.id, code, reason, phase);
        }
      })();
    }
  })();
  (async () => {
    for await (const { socket, isAuthenticated } of ag.listener('connection')) {
      socket.__connected = true;
      if (opts.batch) socket.startBatching();
      log('connection', socket.id, 'authenticated', isAuthenticated, socket.request && socket.request.url);
      for (const name of PROCEDURES) {
        (async () => {
          for await (const req of socket.procedure(name)) {
            void handleProcedure(srv, socket, name, req.data, (err, d) => (err ? req.error(err) : req.end(d)));
          }
        })();
        (async () => {
          for await (const data of socket.receiver(name)) void handleProcedure(srv, socket, name, data, null);
        })();
      }
    }
  })();
  (async () => {
    for await (const { socket, channel } of ag.listener('subscription')) log('subscribe', socket.id, channel);
  })();
  return srv;
}

function errorJson(err) {
  if (err && typeof err === 'object') {
    const o = { name: err.name, message: err.message };
    for (const [k, v] of Object.entries(err)) if (k !== 'stack') o[k] = v;
    return o;
  }
  return err === undefined ? null : err;
}

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

function pick(name) {
  const all = srv.sockets();
  if (name === undefined || name === null) return all;
  return all.filter((s) => s.id === name || urns.get(s.id) === name);
}

async function control(req, res) {
  const url = new URL(req.url, 'http://127.0.0.1');
  const route = `${req.method} ${url.pathname}`;
  try {
    switch (route) {
      case 'POST /control/publish': {
        const b = await readJson(req);
        if (typeof b.channel !== 'string') return reply(res, 400, { ok: false, error: 'channel must be a string' });
        await srv.publish(b.channel, b.data === undefined ? null : b.data);
        log('control publish', b.channel);
        return reply(res, 200, { ok: true });
      }
      case 'POST /control/emit': {
        const b = await readJson(req);
        if (typeof b.event !== 'string') return reply(res, 400, { ok: false, error: 'event must be a string' });
        const targets = pick(b.to);
        if (b.to !== undefined && b.to !== null && !targets.length) return reply(res, 404, { ok: false, error: `no socket ${b.to}` });
        const results = await Promise.all(targets.map((s) => srv.emit(s, b.event, b.data, !!b.ack, Number(b.timeoutMs) || 0)));
        log('control emit', b.event, targets.length);
        const out = { ok: true, count: targets.length };
        if (b.ack) out.responses = results;
        return reply(res, 200, out);
      }
      case 'POST /control/kick-out': {
        const b = await readJson(req);
        if (typeof b.channel !== 'string') return reply(res, 400, { ok: false, error: 'channel must be a string' });
        const targets = (b.socket !== undefined ? pick(b.socket) : srv.sockets()).filter((s) => srv.subscriptions(s).includes(b.channel));
        await Promise.all(targets.map((s) => srv.kickOut(s, b.channel, b.message === undefined ? 'kicked out' : b.message)));
        log('control kick-out', b.channel, targets.length);
        return reply(res, 200, { ok: true, count: targets.length });
      }
      case 'POST /control/disconnect': {
        const b = await readJson(req);
        const targets = pick(b.socket);
        for (const s of targets) srv.disconnect(s, Number(b.code) || 1000, b.reason);
        log('control disconnect', targets.length, b.code);
        return reply(res, 200, { ok: true, count: targets.length });
      }
      case 'GET /control/received':
        return reply(res, 200, received);
      case 'GET /control/closures':
        return reply(res, 200, closures);
      case 'POST /control/reset':
        received.length = 0;
        closures.length = 0;
        return reply(res, 200, { ok: true });
      case 'GET /control/clients':
        return reply(res, 200, srv.sockets().map((s) => ({
          id: s.id,
          urn: urns.get(s.id) || null,
          authToken: s.authToken || null,
          subscriptions: srv.subscriptions(s),
          url: s.request ? s.request.url : null,
          state: s.state,
        })));
      default:
        return reply(res, 404, { ok: false, error: `no route ${route}` });
    }
  } catch (e) {
    log('control failed', route, e);
    return reply(res, 400, { ok: false, error: String(e && e.message || e) });
  }
}

// The WebSocket server only takes upgrade requests on /socketcluster/; plain HTTP comes here.
const httpServer = http.createServer((req, res) => {
  if (req.url.startsWith('/control/')) return void control(req, res);
  reply(res, 404, { ok: false, error: 'not found' });
});

const srv = opts.version === 9 ? startV9(httpServer) : startV20(httpServer);

httpServer.on('error', (e) => {
  log('listen error', e.message);
  process.exit(1);
});
httpServer.listen(opts.port, '127.0.0.1', () => {
  const { port } = httpServer.address();
  process.stdout.write(`READY ${port}\n`);
  log(`socketcluster-server ${srv.version} protocolVersion ${opts.protocol} listening on 127.0.0.1:${port}/socketcluster/`);
});

function shutdown(sig) {
  log('signal', sig);
  httpServer.close();
  setTimeout(() => process.exit(0), 200).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
