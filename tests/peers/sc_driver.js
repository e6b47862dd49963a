#!/usr/bin/env node
// JSON-lines driver around the SocketCluster client libraries so Rust tests can script many
// SocketCluster clients from one process: socketcluster-client 9.0.4 (`connect()` with
// multiplex:false; legacy protocol 1 only) and socketcluster-client 20.0.2 (npm alias
// `sc-client-20`, `create()`; protocol 2 by default, or 1), chosen per client. One JSON object
// per line: commands on stdin, events on stdout. Every command names its client with "c".
// Each client keeps its auth token in its own memory (never localStorage), and the v9 library
// always gets the `ws` module (never a global WebSocket).
//
// Commands:
//   {"op":"connect","c","port","host"?:"127.0.0.1","path"?:"/socketcluster/","version":9|20,
//    "protocol"?:1|2,"authToken"?,"query"?:{}|"a=1","ackTimeout"?:10000,"connectTimeout"?,
//    "autoReconnect"?:false,"reconnectDelay"?:ms,"events"?:["name",...],"rawFrames"?:bool,
//    "batching"?:bool}
//        a new client (replacing, silently, an old one of that name) on
//        ws://host:port<path>?<query>. protocol defaults to 1 for version 9 (the only one it
//        speaks) and 2 for version 20. authToken is sent in the #handshake. autoReconnect uses
//        the library's backoff, or a fixed reconnectDelay. events: as many `listen` commands,
//        registered before the socket opens. rawFrames: report every WebSocket text message
//        both ways ("frame" events; pings/pongs included). batching (v20 only):
//        socket.startBatching() once connected: outbound packets go out as JSON arrays every
//        50 ms.
//   {"op":"emit","c","event","data"?,"reqId"?,"cb"?:bool,"ackTimeout"?}
//        cb (default: true when reqId is given) asks for an answer: v9 emit(event, data, cb),
//        v20 invoke (with a cid on the wire); reports "ack". Without cb: v9 emit(event, data),
//        v20 transmit (no cid). ackTimeout (v20 only) overrides the client's for this call.
//        v9 keeps some names for local events (its socket.emit never sends them): connect,
//        connectAbort, close, disconnect, message, error, raw, fail, kickOut, subscribe,
//        unsubscribe, subscribeStateChange, authStateChange, authenticate, deauthenticate,
//        removeAuthToken, subscribeRequest; emit (and listen) refuse them on v9 (cmd_error).
//   {"op":"publish","c","channel","data"?,"reqId"?}
//        with reqId: v9 publish(ch, data, cb) / v20 invokePublish (a cid), reports "ack";
//        without: v9 publish(ch, data) / v20 transmitPublish
//   {"op":"subscribe","c","channel","waitForAuth"?:bool,"data"?,"batch"?:bool}
//        batch (v9 only): the channel's batch option: #subscribe goes out as a one-packet JSON
//        array with "batch":true in its data, and the v9 server answers in an array too.
//        reports "subscribe" or "subscribeFail", then the channel's data as "channel" events
//        (v9 channel.watch, v20 `for await (data of channel)`, one consumer per channel name)
//   {"op":"unsubscribe","c","channel"}
//   {"op":"listen","c","event","ackData"?,"ackError"?,"noAck"?:bool}
//        report the server's `event` as "event" (v9 socket.on(event), v20 socket.receiver(event)
//        for transmits and socket.procedure(event) for RPCs). When the server asked for an
//        answer (a cid): answer ackError in the error slot if given, else ackData (default
//        none), unless noAck. A second listen on the same event changes the answer.
//   {"op":"authenticate","c","token","reqId"?}  socket.authenticate(token): reports "ack" with
//        data {isAuthenticated, authError}
//   {"op":"deauthenticate","c"}             socket.deauthenticate() (sends #removeAuthToken)
//   {"op":"disconnect","c","code"?:1000,"reason"?}  socket.disconnect(code, reason)
//   {"op":"raw_send","c","data"}            a text frame as is on the current WebSocket,
//        bypassing the library (data not a string: sent as its JSON)
//   {"op":"info","c"}                       reports "info"
//   {"op":"exit"}
// Events:
//   {"ev":"ready"}
//   {"ev":"connecting","c"}                 a WebSocket is being opened (each reconnect too)
//   {"ev":"connect","c","id","isAuthenticated","authError","pingTimeout"}  handshake answered
//        (authError: {name,message,..} of a rejected handshake token, else null)
//   {"ev":"connectAbort","c","code","reason"}  closed before the handshake was answered
//   {"ev":"disconnect","c","code","reason"}    closed after it
//   {"ev":"close","c","code","reason"}         after either of the two above
//   {"ev":"error","c","error":{name,message,..}}  the library's 'error' (SocketProtocolError
//        for a close code it does not ignore, auth errors, ...)
//   {"ev":"ack","c","reqId","error","data"}  the answer to emit/publish/authenticate with
//        reqId. error: null, {name,message,..own properties} of an Error, or the raw first-slot
//        value when the server answered a non-object error (e.g. a string). data: the data
//        slot, null when absent or on TimeoutError/BadConnectionError
//   {"ev":"subscribe","c","channel"} | {"ev":"subscribeFail","c","channel","error"}
//   {"ev":"unsubscribe","c","channel"}        (also after a kickOut and on disconnect)
//   {"ev":"channel","c","channel","data"}
//   {"ev":"kickOut","c","channel","message"}
//   {"ev":"authenticate","c","signedAuthToken","authToken"}  (handshake, #setAuthToken,
//        authenticate)
//   {"ev":"deauthenticate","c"}
//   {"ev":"authStateChange","c","oldState","newState","signedAuthToken"?}
//   {"ev":"removeAuthToken","c"}               the token was removed (#removeAuthToken or
//        deauthenticate)
//   {"ev":"event","c","event","data","rpc":bool}  a listened server event; rpc: it had a cid
//   {"ev":"frame","c","dir":"in"|"out","data"}  rawFrames only ("data" is {"$bin":base64}
//        for a binary message)
//   {"ev":"info","c","version","protocol","id","state","authState","signedAuthToken",
//    "authToken","subscriptions","pendingSubscriptions"}
//   {"ev":"cmd_error","c"?,"op"?,"message"}     a command could not be carried out
'use strict';
const readline = require('readline');

// Node >= 22 has a global WebSocket, which socketcluster-client 9 would prefer over `ws`
// (and then ignore its options). Tests want the `ws` module, as the library uses in Node 20.
try {
  delete globalThis.WebSocket;
} catch (_) { /* not deletable: older Node without it */ }
const sc9 = require('socketcluster-client');
const sc20 = require('sc-client-20');

const out = (o) => process.stdout.write(JSON.stringify(o, jsonReplacer()) + '\n');
const log = (...a) => console.error(new Date().toISOString(), ...a);

function jsonReplacer() {
  const seen = new WeakSet();
  return function (key, v) {
    if (typeof v === 'function') return undefined;
    if (v && typeof v === 'object') {
      if (Buffer.isBuffer(v)) return { $bin: v.toString('base64') };
      if (v.type === 'Buffer' && Array.isArray(v.data)) return { $bin: Buffer.from(v.data).toString('base64') };
      if (v instanceof ArrayBuffer) return { $bin: Buffer.from(v).toString('base64') };
      if (typeof v.ref === 'function' && typeof v.unref === 'function') return undefined; // timers
      if (seen.has(v)) return '[circular]';
      seen.add(v);
    }
    return v;
  };
}

// An error as JSON: name and message plus its own enumerable properties; a non-object (a
// string in the error slot) as is.
function errorJson(err) {
  if (err === undefined || err === null) return null;
  if (typeof err === 'object') {
    const o = { name: err.name, message: err.message };
    for (const [k, v] of Object.entries(err)) if (k !== 'stack') o[k] = v;
    return o;
  }
  return err;
}
const TRANSPORT_ERRORS = new Set(['TimeoutError', 'BadConnectionError']);

// --- per-client in-memory token storage ----------------------------------------------------
class MemoryAuth9 {
  constructor(token) { this.token = token || null; }
  saveToken(name, token, options, cb) { this.token = token; if (cb) cb(null, token); }
  removeToken(name, cb) { const old = this.token; this.token = null; if (cb) cb(null, old); }
  loadToken(name, cb) { cb(null, this.token); }
}
class MemoryAuth20 {
  constructor(token) { this.token = token || null; }
  saveToken(name, token) { this.token = token; return Promise.resolve(token); }
  removeToken() { const old = this.token; this.token = null; return Promise.resolve(old); }
  loadToken() { return Promise.resolve(this.token); }
}

const clients = new Map(); // name -> state

function need(cmd, field) {
  if (cmd[field] === undefined) throw new Error(`${cmd.op}: missing "${field}"`);
  return cmd[field];
}
function client(cmd) {
  const st = clients.get(need(cmd, 'c'));
  if (!st) throw new Error(`${cmd.op}: no client "${cmd.c}"`);
  return st;
}

// --- connect -------------------------------------------------------------------------------
function connect(cmd) {
  const name = need(cmd, 'c');
  const version = Number(need(cmd, 'version'));
  if (version !== 9 && version !== 20) throw new Error('connect: version must be 9 or 20');
  const protocol = Number(cmd.protocol || (version === 9 ? 1 : 2));
  if (protocol !== 1 && protocol !== 2) throw new Error('connect: protocol must be 1 or 2');
  if (version === 9 && protocol !== 1) throw new Error('connect: socketcluster-client 9 speaks protocol 1 only');
  if (version === 9 && cmd.batching) throw new Error('connect: batching is a socketcluster-client 20 feature');

  const events = Array.isArray(cmd.events) ? cmd.events : [];
  if (version === 9) events.forEach((ev) => refuseV9Local({ version }, 'connect', ev));

  const old = clients.get(name);
  if (old) {
    old.dead = true;
    try { old.socket.disconnect(); } catch (_) { /* already closed */ }
  }

  const opts = {
    hostname: cmd.host || '127.0.0.1',
    port: Number(need(cmd, 'port')),
    path: cmd.path || '/socketcluster/',
    secure: false,
    autoConnect: false,
    autoReconnect: cmd.autoReconnect === true,
    ackTimeout: Number(cmd.ackTimeout) || 10000,
  };
  if (cmd.connectTimeout) opts.connectTimeout = Number(cmd.connectTimeout);
  if (cmd.query !== undefined) opts.query = cmd.query;
  if (opts.autoReconnect && cmd.reconnectDelay !== undefined) {
    const d = Number(cmd.reconnectDelay);
    opts.autoReconnectOptions = { initialDelay: d, randomness: 0, multiplier: 1, maxDelay: Math.max(d, 1) };
  }

  const st = { name, version, protocol, dead: false, socket: null, watched: new Set(), listens: new Map(), rawFrames: !!cmd.rawFrames };
  const emit = (o) => {
    if (!st.dead) out({ ...o, c: name });
  };
  st.emit = emit;
  clients.set(name, st);

  let socket;
  if (version === 9) {
    socket = sc9.connect({ ...opts, multiplex: false, authEngine: new MemoryAuth9(cmd.authToken) });
    wireV9(st, socket, emit);
  } else {
    socket = sc20.create({ ...opts, protocolVersion: protocol, authEngine: new MemoryAuth20(cmd.authToken) });
    wireV20(st, socket, emit);
    if (cmd.batching) {
      (async () => {
        for await (const _ of socket.listener('connect')) socket.startBatching();
      })();
    }
  }
  st.socket = socket;

  // Hook every transport the socket creates (first connect, reconnects) for raw frames.
  const protoConnect = Object.getPrototypeOf(socket).connect;
  socket.connect = function (...args) {
    const r = protoConnect.apply(this, args);
    hookTransport(st, this.transport);
    return r;
  };
  for (const ev of events) listen(st, { event: ev });
  socket.connect();
}

function hookTransport(st, transport) {
  if (!st.rawFrames || !transport || !transport.socket || transport.__hooked) return;
  transport.__hooked = true;
  const ws = transport.socket;
  const send = ws.send;
  ws.send = function (data, ...rest) {
    st.emit({ ev: 'frame', dir: 'out', data: frameJson(data, typeof data !== 'string') });
    return send.call(this, data, ...rest);
  };
  // Before the library's own handler, so a frame is reported before what it causes.
  ws.prependListener('message', (data, isBinary) => {
    const binary = typeof data === 'string' ? false : isBinary !== false;
    st.emit({ ev: 'frame', dir: 'in', data: frameJson(data, binary) });
  });
}

function frameJson(data, binary) {
  if (typeof data === 'string') return data;
  const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
  return binary ? { $bin: buf.toString('base64') } : buf.toString('utf8');
}

function wireV9(st, socket, emit) {
  socket.on('connecting', () => emit({ ev: 'connecting' }));
  socket.on('connect', (status) => {
    status = status || {};
    emit({ ev: 'connect', id: socket.id, isAuthenticated: !!status.isAuthenticated,
      authError: errorJson(status.authError), pingTimeout: status.pingTimeout });
  });
  socket.on('connectAbort', (code, reason) => emit({ ev: 'connectAbort', code, reason: reason === undefined ? null : reason }));
  socket.on('disconnect', (code, reason) => emit({ ev: 'disconnect', code, reason: reason === undefined ? null : reason }));
  socket.on('close', (code, reason) => emit({ ev: 'close', code, reason: reason === undefined ? null : reason }));
  socket.on('error', (err) => emit({ ev: 'error', error: errorJson(err) }));
  socket.on('subscribe', (channel) => emit({ ev: 'subscribe', channel }));
  socket.on('subscribeFail', (err, channel) => emit({ ev: 'subscribeFail', channel, error: errorJson(err) }));
  socket.on('unsubscribe', (channel) => emit({ ev: 'unsubscribe', channel }));
  socket.on('kickOut', (message, channel) => emit({ ev: 'kickOut', channel, message: message === undefined ? null : message }));
  socket.on('authenticate', (signedAuthToken) => emit({ ev: 'authenticate', signedAuthToken, authToken: socket.authToken }));
  socket.on('deauthenticate', () => emit({ ev: 'deauthenticate' }));
  socket.on('authStateChange', (d) => {
    const e = { ev: 'authStateChange', oldState: d.oldState, newState: d.newState };
    if (d.signedAuthToken !== undefined) e.signedAuthToken = d.signedAuthToken;
    emit(e);
  });
  socket.on('removeAuthToken', () => emit({ ev: 'removeAuthToken' }));
  // Note whether the server's event carried a cid (the library hides it from handlers).
  const onSCEvent = socket._onSCEvent;
  socket._onSCEvent = function (event, data, res) {
    st.inboundRpc = !!(res && res.id);
    return onSCEvent.call(this, event, data, res);
  };
}

function wireV20(st, socket, emit) {
  const on = (name, fn) => {
    (async () => {
      for await (const d of socket.listener(name)) {
        try { fn(d || {}); } catch (e) { log('listener', name, e); }
      }
    })();
  };
  on('connecting', () => emit({ ev: 'connecting' }));
  on('connect', (s) => emit({ ev: 'connect', id: socket.id, isAuthenticated: !!s.isAuthenticated,
    authError: errorJson(s.authError), pingTimeout: s.pingTimeout }));
  on('connectAbort', (d) => emit({ ev: 'connectAbort', code: d.code, reason: d.reason === undefined ? null : d.reason }));
  on('disconnect', (d) => emit({ ev: 'disconnect', code: d.code, reason: d.reason === undefined ? null : d.reason }));
  on('close', (d) => emit({ ev: 'close', code: d.code, reason: d.reason === undefined ? null : d.reason }));
  on('error', (d) => emit({ ev: 'error', error: errorJson(d.error) }));
  on('subscribe', (d) => emit({ ev: 'subscribe', channel: d.channel }));
  on('subscribeFail', (d) => emit({ ev: 'subscribeFail', channel: d.channel, error: errorJson(d.error) }));
  on('unsubscribe', (d) => emit({ ev: 'unsubscribe', channel: d.channel }));
  on('kickOut', (d) => emit({ ev: 'kickOut', channel: d.channel, message: d.message === undefined ? null : d.message }));
  on('authenticate', (d) => emit({ ev: 'authenticate', signedAuthToken: d.signedAuthToken, authToken: d.authToken }));
  on('deauthenticate', () => emit({ ev: 'deauthenticate' }));
  on('authStateChange', (d) => {
    const e = { ev: 'authStateChange', oldState: d.oldAuthState, newState: d.newAuthState };
    if (d.signedAuthToken !== undefined) e.signedAuthToken = d.signedAuthToken;
    emit(e);
  });
  on('removeAuthToken', () => emit({ ev: 'removeAuthToken' }));
}

// --- commands ------------------------------------------------------------------------------
function ack(st, reqId, err, data) {
  const e = { ev: 'ack', error: errorJson(err), data: data === undefined ? null : data };
  if (reqId !== undefined) e.reqId = reqId;
  if (err && typeof err === 'object' && TRANSPORT_ERRORS.has(err.name)) e.data = null;
  st.emit(e);
}

// socketcluster-client 9's SCSocket._localEvents: emit() keeps these in the process.
const V9_LOCAL_EVENTS = new Set(['connect', 'connectAbort', 'close', 'disconnect', 'message', 'error', 'raw',
  'fail', 'kickOut', 'subscribe', 'unsubscribe', 'subscribeStateChange', 'authStateChange', 'authenticate',
  'deauthenticate', 'removeAuthToken', 'subscribeRequest']);
function refuseV9Local(st, op, event) {
  if (st.version === 9 && V9_LOCAL_EVENTS.has(event)) {
    throw new Error(`${op}: socketcluster-client 9 keeps "${event}" as a local event name`);
  }
}

function emitCmd(st, cmd) {
  const event = need(cmd, 'event');
  refuseV9Local(st, 'emit', event);
  const cb = cmd.cb !== undefined ? !!cmd.cb : cmd.reqId !== undefined;
  const { socket } = st;
  if (st.version === 9) {
    if (cb) socket.emit(event, cmd.data, (err, d) => ack(st, cmd.reqId, err, d));
    else socket.emit(event, cmd.data);
    return;
  }
  if (cb) {
    const o = cmd.ackTimeout ? { ackTimeout: Number(cmd.ackTimeout) } : undefined;
    socket.invoke(event, cmd.data, o).then((d) => ack(st, cmd.reqId, null, d), (err) => ack(st, cmd.reqId, err));
  } else {
    socket.transmit(event, cmd.data).catch((e) => log('transmit', e));
  }
}

function publishCmd(st, cmd) {
  const channel = need(cmd, 'channel');
  const { socket } = st;
  const cb = cmd.reqId !== undefined;
  if (st.version === 9) {
    if (cb) socket.publish(channel, cmd.data, (err, d) => ack(st, cmd.reqId, err, d));
    else socket.publish(channel, cmd.data);
    return;
  }
  if (cb) socket.invokePublish(channel, cmd.data).then((d) => ack(st, cmd.reqId, null, d), (err) => ack(st, cmd.reqId, err));
  else socket.transmitPublish(channel, cmd.data).catch((e) => log('transmitPublish', e));
}

function subscribeCmd(st, cmd) {
  const channel = need(cmd, 'channel');
  const o = {};
  if (cmd.waitForAuth) o.waitForAuth = true;
  if (cmd.data !== undefined) o.data = cmd.data;
  if (cmd.batch) {
    if (st.version !== 9) throw new Error('subscribe: batch is a socketcluster-client 9 option');
    o.batch = true;
  }
  const ch = st.socket.subscribe(channel, o);
  if (st.watched.has(channel)) return;
  st.watched.add(channel);
  if (st.version === 9) {
    ch.watch((data) => st.emit({ ev: 'channel', channel, data: data === undefined ? null : data }));
  } else {
    (async () => {
      for await (const data of ch) st.emit({ ev: 'channel', channel, data: data === undefined ? null : data });
    })();
  }
}

function listen(st, cmd) {
  const event = need(cmd, 'event');
  refuseV9Local(st, 'listen', event);
  const conf = { ackData: cmd.ackData, ackError: cmd.ackError, noAck: !!cmd.noAck };
  const known = st.listens.has(event);
  st.listens.set(event, conf);
  if (known) return;
  const current = () => st.listens.get(event);
  if (st.version === 9) {
    st.socket.on(event, (data, res) => {
      const rpc = !!st.inboundRpc;
      st.emit({ ev: 'event', event, data: data === undefined ? null : data, rpc });
      const c = current();
      if (!rpc || c.noAck || !res) return;
      if (c.ackError !== undefined) res(c.ackError);
      else res(null, c.ackData);
    });
    return;
  }
  (async () => {
    for await (const data of st.socket.receiver(event)) {
      st.emit({ ev: 'event', event, data: data === undefined ? null : data, rpc: false });
    }
  })();
  (async () => {
    for await (const req of st.socket.procedure(event)) {
      st.emit({ ev: 'event', event, data: req.data === undefined ? null : req.data, rpc: true });
      const c = current();
      if (c.noAck) continue;
      if (c.ackError !== undefined) req.error(c.ackError);
      else req.end(c.ackData);
    }
  })();
}

function authStatusJson(s) {
  if (!s || typeof s !== 'object') return s === undefined ? null : s;
  return { isAuthenticated: s.isAuthenticated, authError: errorJson(s.authError) };
}

function authenticateCmd(st, cmd) {
  const token = need(cmd, 'token');
  if (st.version === 9) {
    st.socket.authenticate(token, (err, status) => ack(st, cmd.reqId, err, authStatusJson(status)));
    return;
  }
  st.socket.authenticate(token).then((status) => ack(st, cmd.reqId, null, authStatusJson(status)), (err) => ack(st, cmd.reqId, err));
}

function rawSend(st, cmd) {
  const data = need(cmd, 'data');
  const t = st.socket.transport;
  const ws = t && t.socket;
  if (!ws || ws.readyState !== 1) throw new Error('raw_send: the WebSocket is not open');
  ws.send(typeof data === 'string' ? data : JSON.stringify(data));
}

function info(st) {
  const s = st.socket;
  const all = s.subscriptions(true);
  const subscribed = s.subscriptions(false);
  st.emit({ ev: 'info', version: st.version, protocol: st.protocol, id: s.id, state: s.state,
    authState: s.authState, signedAuthToken: s.signedAuthToken || null, authToken: s.authToken || null,
    subscriptions: subscribed, pendingSubscriptions: all.filter((x) => !subscribed.includes(x)) });
}

function handle(cmd) {
  switch (cmd.op) {
    case 'connect': return connect(cmd);
    case 'emit': return emitCmd(client(cmd), cmd);
    case 'publish': return publishCmd(client(cmd), cmd);
    case 'subscribe': return subscribeCmd(client(cmd), cmd);
    case 'unsubscribe': return void client(cmd).socket.unsubscribe(need(cmd, 'channel'));
    case 'listen': return listen(client(cmd), cmd);
    case 'authenticate': return authenticateCmd(client(cmd), cmd);
    case 'deauthenticate': {
      const st = client(cmd);
      const r = st.socket.deauthenticate();
      if (r && typeof r.catch === 'function') r.catch((e) => log('deauthenticate', e));
      return;
    }
    case 'disconnect': {
      const st = client(cmd);
      return void st.socket.disconnect(cmd.code === undefined ? undefined : Number(cmd.code), cmd.reason);
    }
    case 'raw_send': return rawSend(client(cmd), cmd);
    case 'info': return info(client(cmd));
    case 'exit': return exit(0);
    default: throw new Error(`unknown op ${JSON.stringify(cmd.op)}`);
  }
}

function exit(code) {
  for (const st of clients.values()) {
    st.dead = true;
    try { st.socket.disconnect(); } catch (_) { /* closed */ }
  }
  setTimeout(() => process.exit(code), 50);
}

process.on('unhandledRejection', (e) => log('unhandled rejection', e));

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (!line.trim()) return;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (e) {
    return out({ ev: 'cmd_error', message: `bad JSON: ${e.message}` });
  }
  try {
    handle(cmd);
  } catch (e) {
    log('command failed', line, e);
    out({ ev: 'cmd_error', c: cmd.c, op: cmd.op, message: e.message });
  }
});
rl.on('close', () => exit(0));
process.on('SIGTERM', () => exit(0));
out({ ev: 'ready' });
