#!/usr/bin/env node
// JSON-lines driver around pusher-js 8.6 (its Node build, over its bundled faye-websocket) so Rust
// tests can script many Pusher Channels (protocol 7) clients from one process. One JSON object
// per line: commands on stdin, events on stdout. Every command names its client with "c".
// Private and presence channels are signed locally with the `pusher` server library (or by an
// auth endpoint); every event a channel receives is reported, with its close codes and errors.
//
// Commands:
//   {"op":"connect","c","key"?:"app-key","host"?:"127.0.0.1","port","wsPath"?:"",
//    "authSecret"?,"appId"?:"app-id","userId"?,"userInfo"?,"forgeAuth"?:bool,
//    "authEndpoint"?,"authHeaders"?:{},"headers"?:{},"activityTimeout"?:ms,"pongTimeout"?:ms,
//    "unavailableTimeout"?:ms,"rawFrames"?:bool,"signinAuth"?,"userData"?,
//    "options"?:{...any pusher-js option}}
//        a new pusher-js client (replacing an old one of that name) on ws://host:port<wsPath>/app/<key>
//        (cluster mt1, forceTLS false, enabledTransports ["ws"], no stats). Private and
//        presence subscriptions are authorized locally with authSecret (pusher@5
//        authorizeChannel for the socket_id pusher-js has; presence channel_data
//        {user_id: userId (default: the client's name), user_info: userInfo}); forgeAuth signs
//        with a wrong secret. authEndpoint instead makes pusher-js POST socket_id/channel_name
//        there (its ajax authorizer, authHeaders added). Without either, private/presence
//        subscriptions fail with subscription_error type AuthError. headers go on the WebSocket
//        upgrade request (e.g. Origin, Cookie). rawFrames reports every WebSocket message.
//        pusher-js reconnects by itself after a close (unless the close code says refused).
//        signinAuth: pusher-js's userAuthentication gets a customHandler answering
//        {auth: signinAuth, user_data: JSON.stringify(userData || {id: c})} (what an app's
//        user-authentication endpoint returns); the signin itself is the "signin" command.
//   {"op":"subscribe","c","channel","forgeAuth"?:bool,"userId"?,"userInfo"?}
//        (the optional fields override the connect ones for this channel's auth)
//   {"op":"unsubscribe","c","channel"}
//   {"op":"trigger","c","channel","event","data"?}   client event (channel.trigger); reports "triggered"
//   {"op":"send_event","c","event","data"?,"channel"?} any event through pusher.send_event
//   {"op":"raw_send","c","data"}     a text frame as is on the current WebSocket (bypasses pusher-js)
//   {"op":"close_socket","c","code"?,"reason"?}  close the current WebSocket from the client side
//                                    (pusher-js sees a close and reconnects)
//   {"op":"drop","c"}                destroy the current WebSocket's TCP stream (close 1006)
//   {"op":"disconnect","c"}          pusher.disconnect() (no pusher:unsubscribe is sent)
//   {"op":"reconnect","c"}           pusher.connect() again on the same client (resubscribes)
//   {"op":"info","c"}                reports "info"
//   {"op":"signin","c"}              pusher.signin() (sends pusher:signin once connected; the
//                                    answer, pusher:signin_success or pusher:error, is a conn_event)
//   {"op":"rest","rest":"trigger"|"batch"|"get"|"post"|"auth","port","reqId"?,...}
//        a Pusher HTTP API request (or auth signature) via pusher_rest.js: the request fields
//        are those of pusher_rest.js, with its "op" given as "rest"; reports "rest"
//   {"op":"exit"}
// Events:
//   {"ev":"ready"}
//   {"ev":"open","c","url"}                        a WebSocket opened (each reconnect too)
//   {"ev":"close","c","code","reason"}              a WebSocket closed: the close frame's code
//                                                   (1006 when the TCP stream ended without one)
//   {"ev":"state","c","current","previous","socketId"?}  pusher.connection state_change
//        (initialized, connecting, connected, unavailable, failed, disconnected); socketId when
//        connected
//   {"ev":"connecting_in","c","delay"}             pusher-js will retry in <delay> s
//   {"ev":"error","c","type","data"?,"error"?}     pusher.connection 'error': type PusherError
//        with data {code, message} for a pusher:error message or a close code >= 4000 /
//        != 1000/1001; WebSocketError; HandshakeError; MessageParseError
//   {"ev":"conn_event","c","event","data","rawData"} every received message without a channel
//        (pusher:connection_established, pusher:error, pusher:pong, pusher:ping, ...), after
//        pusher-js handled it; data decoded as pusher-js does, rawData as on the wire
//   {"ev":"auth","c","channel","socketId"}         the local authorizer was asked
//   {"ev":"signin_auth","c","socketId"}            the user authenticator was asked (signinAuth)
//   {"ev":"subscription_succeeded","c","channel","data"?,"rawData"?,
//    "members"?:{id:info},"count"?,"me"?:{id,info},"myId"?}   (members/count/me for presence-*)
//   {"ev":"subscription_error","c","channel","type","status"?,"error"?,"data"}
//   {"ev":"member_added"|"member_removed","c","channel","id","info","count"}
//   {"ev":"subscription_count","c","channel","count","data"}
//   {"ev":"event","c","channel","event","data","rawData"?,"userId"?}  any other event on a
//        subscribed channel (server and client events, pusher:error on a channel, ...). data as
//        pusher-js hands it to the callback (a JSON string decoded); rawData as on the wire;
//        userId from the message's user_id (client events on presence channels)
//   {"ev":"triggered","c","channel","event","ok"}  channel.trigger's answer (false: not sent)
//   {"ev":"frame","c","dir":"in"|"out","data"}     rawFrames only: every WebSocket text message
//   {"ev":"info","c","state","socketId","channels":[{"name","subscribed","members"?}]}
//   {"ev":"rest","reqId"?,"status","body"} | {"ev":"rest","reqId"?,"error"}
//   {"ev":"cmd_error","c"?,"op"?,"message"}         a command could not be carried out
'use strict';
const readline = require('readline');
const Pusher = require('pusher-js');
const PusherServer = require('pusher');
const pusherRest = require('./pusher_rest');

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const log = (...a) => console.error(new Date().toISOString(), ...a);

// pusher-js debug log (every state change and message) goes to the driver's log file.
Pusher.log = (msg) => log('[pusher-js]', msg);

// JSON-safe copy: no cycles, no sockets or event targets, errors as their message.
function toJson(v, seen = new Set()) {
  if (v === undefined || v === null) return v === undefined ? undefined : null;
  if (typeof v === 'function') return undefined;
  if (typeof v !== 'object') return v;
  if (v instanceof Error) return v.message || String(v);
  if (seen.has(v)) return '[cycle]';
  seen.add(v);
  let r;
  if (Array.isArray(v)) r = v.map((x) => toJson(x, seen));
  else {
    r = {};
    for (const [k, x] of Object.entries(v)) {
      if (k === 'target' || k === 'currentTarget' || k.startsWith('_')) continue;
      const j = toJson(x, seen);
      if (j !== undefined) r[k] = j;
    }
  }
  seen.delete(v);
  return r;
}

// Decode a Pusher message as pusher-js does (data: a JSON string is parsed when it parses).
function decode(text) {
  let msg;
  try {
    msg = JSON.parse(text);
  } catch (e) {
    return null;
  }
  if (!msg || typeof msg !== 'object') return null;
  let data = msg.data;
  if (typeof data === 'string') {
    try {
      data = JSON.parse(data);
    } catch (e) {
      // stays a string
    }
  }
  return { msg, data };
}

const clients = new Map(); // name -> state
const byTimeline = new Map(); // a pusher-js instance's Timeline -> state
let creating = null; // the state whose `new Pusher` is running (a socket may open synchronously)

// Every pusher-js WebSocket comes from this hook (shared by all instances); the transport's
// options carry the owning instance's timeline, which tells the clients apart.
const wsHooks = Pusher.Runtime.Transports.ws.hooks;
wsHooks.getSocket = function getSocket(url, options) {
  const st = (options && byTimeline.get(options.timeline)) || creating;
  const API = Pusher.Runtime.getWebSocketAPI();
  const fayeOptions = {};
  if (st && st.headers) fayeOptions.headers = st.headers;
  const socket = new API(url, undefined, fayeOptions);
  if (st) instrument(st, socket, url);
  else log('socket without a client', url);
  return socket;
};

function instrument(st, socket, url) {
  const name = st.name;
  st.socket = socket;
  socket.addEventListener('open', () => out({ ev: 'open', c: name, url }));
  socket.addEventListener('close', (e) => {
    out({ ev: 'close', c: name, code: e.code, reason: e.reason || '' });
    if (st.socket === socket) st.socket = null;
  });
  const send = socket.send.bind(socket);
  socket.send = (data) => {
    if (st.rawFrames) out({ ev: 'frame', c: name, dir: 'out', data: String(data) });
    return send(data);
  };
  // pusher-js sets socket.onmessage; wrap whatever it sets so the raw message is known while
  // pusher-js dispatches it (synchronously) to the callbacks below.
  let handler = null;
  Object.defineProperty(socket, 'onmessage', {
    configurable: true,
    enumerable: true,
    get: () => handler,
    set: (fn) => {
      handler = typeof fn === 'function' ? (e) => onMessage(st, e, fn) : fn;
    },
  });
}

function onMessage(st, e, fn) {
  const text = typeof e.data === 'string' ? e.data : Buffer.from(e.data).toString('utf8');
  if (st.rawFrames) out({ ev: 'frame', c: st.name, dir: 'in', data: text });
  const d = decode(text);
  st.lastRaw = d ? d.msg : null;
  try {
    fn(e);
  } finally {
    st.lastRaw = null;
  }
  if (d && (d.msg.channel === undefined || d.msg.channel === null)) {
    out({
      ev: 'conn_event',
      c: st.name,
      event: d.msg.event,
      data: d.data === undefined ? null : toJson(d.data),
      rawData: d.msg.data === undefined ? null : toJson(d.msg.data),
    });
  }
}

function need(cmd, field) {
  if (cmd[field] === undefined) throw new Error(`${cmd.op}: missing "${field}"`);
  return cmd[field];
}
function client(cmd) {
  const st = clients.get(need(cmd, 'c'));
  if (!st) throw new Error(`${cmd.op}: no client "${cmd.c}"`);
  return st;
}

function authorize(st, { socketId, channelName }, cb) {
  out({ ev: 'auth', c: st.name, channel: channelName, socketId });
  const o = st.channelAuth.get(channelName) || {};
  const forge = o.forgeAuth !== undefined ? o.forgeAuth : st.forgeAuth;
  if (!st.authSecret) return cb(new Error(`no authSecret for ${channelName}`), null);
  const signer = new PusherServer({
    appId: st.appId,
    key: st.key,
    secret: forge ? `${st.authSecret}-forged` : st.authSecret,
    host: '127.0.0.1',
    useTLS: false,
  });
  let data;
  if (channelName.startsWith('presence-')) {
    const userId = o.userId !== undefined ? o.userId : st.userId !== undefined ? st.userId : st.name;
    const userInfo = o.userInfo !== undefined ? o.userInfo : st.userInfo;
    data = { user_id: String(userId) };
    if (userInfo !== undefined) data.user_info = userInfo;
  }
  let auth;
  try {
    auth = signer.authorizeChannel(socketId, channelName, data);
  } catch (e) {
    return cb(e, null);
  }
  return cb(null, auth);
}

function connect(cmd) {
  const name = need(cmd, 'c');
  const port = Number(need(cmd, 'port'));
  const old = clients.get(name);
  if (old) {
    byTimeline.delete(old.pusher.timeline);
    old.pusher.disconnect();
  }
  const st = {
    name,
    key: cmd.key || 'app-key',
    appId: String(cmd.appId || 'app-id'),
    authSecret: cmd.authSecret,
    forgeAuth: Boolean(cmd.forgeAuth),
    userId: cmd.userId,
    userInfo: cmd.userInfo,
    headers: cmd.headers,
    rawFrames: Boolean(cmd.rawFrames),
    channelAuth: new Map(),
    bound: new WeakSet(),
    socket: null,
    lastRaw: null,
    pusher: null,
  };
  const opts = {
    cluster: 'mt1',
    wsHost: cmd.host || '127.0.0.1',
    wsPort: port,
    wssPort: port,
    forceTLS: false,
    enabledTransports: ['ws'],
    enableStats: false, // (pusher-js 8 deprecates disableStats: true)
  };
  if (cmd.wsPath) opts.wsPath = cmd.wsPath;
  if (cmd.activityTimeout !== undefined) opts.activityTimeout = cmd.activityTimeout;
  if (cmd.pongTimeout !== undefined) opts.pongTimeout = cmd.pongTimeout;
  if (cmd.unavailableTimeout !== undefined) opts.unavailableTimeout = cmd.unavailableTimeout;
  if (cmd.authEndpoint) {
    opts.channelAuthorization = { endpoint: cmd.authEndpoint, transport: 'ajax', headers: cmd.authHeaders || {} };
  } else {
    opts.channelAuthorization = { customHandler: (params, cb) => authorize(st, params, cb) };
  }
  if (cmd.signinAuth !== undefined) {
    const userData = JSON.stringify(cmd.userData || { id: name });
    opts.userAuthentication = {
      customHandler: (params, cb) => {
        out({ ev: 'signin_auth', c: name, socketId: params.socketId });
        cb(null, { auth: String(cmd.signinAuth), user_data: userData });
      },
    };
  }
  if (cmd.options && typeof cmd.options === 'object') Object.assign(opts, cmd.options);
  clients.set(name, st);
  creating = st;
  let p;
  try {
    p = new Pusher(st.key, opts);
  } finally {
    creating = null;
  }
  st.pusher = p;
  byTimeline.set(p.timeline, st);
  // The constructor already moved initialized -> connecting, before anything could bind.
  if (p.connection.state !== 'initialized') out({ ev: 'state', c: name, current: p.connection.state, previous: 'initialized' });
  p.connection.bind('state_change', ({ previous, current }) => {
    const ev = { ev: 'state', c: name, current, previous };
    if (current === 'connected') ev.socketId = p.connection.socket_id;
    out(ev);
  });
  p.connection.bind('connecting_in', (delay) => out({ ev: 'connecting_in', c: name, delay }));
  p.connection.bind('error', (err) => {
    const ev = { ev: 'error', c: name, type: err && err.type };
    if (err && err.data !== undefined) ev.data = toJson(err.data);
    if (err && err.error !== undefined) {
      const e = err.error;
      // a faye error event or an Error: its message; else the error object itself
      ev.error = e && typeof e === 'object' && typeof e.message === 'string' ? e.message : toJson(e);
    }
    out(ev);
  });
}

const SPECIAL = new Set([
  'pusher:subscription_succeeded',
  'pusher:subscription_error',
  'pusher:member_added',
  'pusher:member_removed',
  'pusher:subscription_count',
]);

function rawFor(st, channel, event) {
  const m = st.lastRaw;
  return m && m.channel === channel && (event === undefined || m.event === event) ? m : null;
}

function bindChannel(st, ch) {
  if (st.bound.has(ch)) return;
  st.bound.add(ch);
  const c = st.name;
  const channel = ch.name;
  ch.bind('pusher:subscription_succeeded', (data) => {
    const ev = { ev: 'subscription_succeeded', c, channel };
    if (ch.members) {
      ev.members = toJson(ch.members.members);
      ev.count = ch.members.count;
      ev.me = toJson(ch.members.me);
      ev.myId = ch.members.myID;
    } else if (data !== undefined) {
      ev.data = toJson(data);
    }
    const raw = rawFor(st, channel);
    if (raw && raw.data !== undefined) ev.rawData = toJson(raw.data);
    out(ev);
  });
  ch.bind('pusher:subscription_error', (data) => {
    const d = data && typeof data === 'object' ? data : {};
    const ev = { ev: 'subscription_error', c, channel, type: d.type, data: toJson(data) };
    if (d.status !== undefined) ev.status = d.status;
    if (d.error !== undefined) ev.error = toJson(d.error);
    out(ev);
  });
  const member = (kind) => (m) => {
    const info = m && m.info !== undefined ? toJson(m.info) : null;
    out({ ev: kind, c, channel, id: m && m.id, info, count: ch.members ? ch.members.count : null });
  };
  ch.bind('pusher:member_added', member('member_added'));
  ch.bind('pusher:member_removed', member('member_removed'));
  ch.bind('pusher:subscription_count', (data) => {
    out({ ev: 'subscription_count', c, channel, count: data && data.subscription_count, data: toJson(data) });
  });
  ch.bind_global((event, data) => {
    if (SPECIAL.has(event)) return;
    const ev = { ev: 'event', c, channel, event, data: data === undefined ? null : toJson(data) };
    const raw = rawFor(st, channel, event);
    if (raw) {
      if (raw.data !== undefined) ev.rawData = toJson(raw.data);
      if (raw.user_id !== undefined) ev.userId = raw.user_id;
    }
    out(ev);
  });
}

function subscribe(cmd) {
  const st = client(cmd);
  const channel = need(cmd, 'channel');
  const o = {};
  for (const k of ['forgeAuth', 'userId', 'userInfo']) if (cmd[k] !== undefined) o[k] = cmd[k];
  st.channelAuth.set(channel, o);
  // Bind before subscribing: a local authorizer answers synchronously, so a
  // subscription_error can be emitted inside pusher.subscribe().
  bindChannel(st, st.pusher.channels.add(channel, st.pusher));
  st.pusher.subscribe(channel);
}

function trigger(cmd) {
  const st = client(cmd);
  const channel = need(cmd, 'channel');
  const event = need(cmd, 'event');
  const ch = st.pusher.channel(channel);
  if (!ch) throw new Error(`trigger: "${cmd.c}" has no channel "${channel}"`);
  const ok = ch.trigger(event, cmd.data === undefined ? {} : cmd.data);
  out({ ev: 'triggered', c: st.name, channel, event, ok: Boolean(ok) });
}

function currentSocket(cmd) {
  const st = client(cmd);
  if (!st.socket) throw new Error(`${cmd.op}: "${cmd.c}" has no open WebSocket`);
  return st.socket;
}

function info(cmd) {
  const st = client(cmd);
  const p = st.pusher;
  const channels = p.allChannels().map((ch) => {
    const o = { name: ch.name, subscribed: Boolean(ch.subscribed) };
    if (ch.members) o.members = toJson(ch.members.members);
    return o;
  });
  out({ ev: 'info', c: st.name, state: p.connection.state, socketId: p.connection.socket_id || null, channels });
}

function rest(cmd) {
  const req = Object.assign({}, cmd, { op: cmd.rest });
  const tag = cmd.reqId !== undefined ? { reqId: cmd.reqId } : {};
  pusherRest.run(req).then(
    (r) => out(Object.assign({ ev: 'rest' }, tag, r)),
    (e) => out(Object.assign({ ev: 'rest' }, tag, { error: String((e && e.message) || e) })),
  );
}

function handle(cmd) {
  switch (cmd.op) {
    case 'connect': return connect(cmd);
    case 'subscribe': return subscribe(cmd);
    case 'unsubscribe': return void client(cmd).pusher.unsubscribe(need(cmd, 'channel'));
    case 'trigger': return trigger(cmd);
    case 'send_event': {
      const ok = client(cmd).pusher.send_event(need(cmd, 'event'), cmd.data === undefined ? {} : cmd.data, cmd.channel);
      if (!ok) throw new Error('send_event: not connected');
      return;
    }
    case 'raw_send': return void currentSocket(cmd).send(String(need(cmd, 'data')));
    case 'close_socket': {
      const s = currentSocket(cmd);
      return void (cmd.code !== undefined ? s.close(cmd.code, cmd.reason || '') : s.close());
    }
    case 'drop': {
      const s = currentSocket(cmd);
      if (!s._stream) throw new Error('drop: no TCP stream');
      return void s._stream.destroy();
    }
    case 'disconnect': return void client(cmd).pusher.disconnect();
    case 'reconnect': return void client(cmd).pusher.connect();
    case 'info': return info(cmd);
    case 'signin': return void client(cmd).pusher.signin();
    case 'rest': return rest(cmd);
    case 'exit': return exit(0);
    default: throw new Error(`unknown op ${JSON.stringify(cmd.op)}`);
  }
}

function exit(code) {
  for (const st of clients.values()) {
    try {
      st.pusher.disconnect();
    } catch (e) {
      // exiting anyway
    }
  }
  setTimeout(() => process.exit(code), 50);
}

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
