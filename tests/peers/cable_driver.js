#!/usr/bin/env node
// JSON-lines driver around @rails/actioncable 8.1 (the Rails JS client) so Rust tests can script
// many Action Cable consumers from one process. One JSON object per line: commands on stdin,
// events on stdout. Every command names its client (one consumer, one WebSocket at a time) with
// "c". A subscription is named by its identifier object {"channel":"Chats::RoomChannel","id":"7"}
// (a bare string means {"channel":<string>}); the wire identifier is JSON.stringify of that object
// in the key order given, and events carry the object back (parsed from the wire string).
//
// Node has no browser: the WebSocket is a `ws` subclass (per client: Origin, extra headers), and
// addEventListener/removeEventListener/document.visibilityState are stubbed. The library's logger
// goes to stderr. Reconnection is the library's own: after a close it reopens when its
// ConnectionMonitor finds the link stale (6 s without a frame, with back-off), and on a
// {"type":"disconnect","reconnect":false} frame it stops for good.
//
// Commands:
//   {"op":"connect","c","url","origin"?:"http://127.0.0.1"|null,"headers"?:{},"subprotocols"?:[],
//    "frames"?:false,"pings"?:false}
//        createConsumer(url) + connect(). origin null = no Origin header (Rails answers HTTP 404);
//        headers go on the upgrade request (e.g. {"Authorization":"Bearer t","Cookie":"member_token=t"});
//        subprotocols are added after actioncable-v1-json/actioncable-unsupported
//        (consumer.addSubProtocol). frames: report every text frame both ways as "frame" events
//        (pings only with pings:true). A second connect on the same c replaces the old consumer.
//   {"op":"subscribe","c","identifier":{channel,...params}|"Channel"}   subscriptions.create()
//   {"op":"perform","c","identifier","action","data"?:{}}   subscription.perform(action, data)
//   {"op":"send","c","identifier","data"}                  subscription.send(data) (no action: receive)
//   {"op":"unsubscribe","c","identifier"}                   subscription.unsubscribe()
//   {"op":"disconnect","c"}                                consumer.disconnect() (no reconnect)
//   {"op":"reconnect","c"}                                 consumer.connect() again (after disconnect)
//   {"op":"raw_send","c","data":string|object}              one text frame on the current socket,
//                                                          bypassing the library (objects are JSON.stringify'd)
//   {"op":"drop","c"}                                      terminate the TCP connection (no close frame);
//                                                          the library reconnects when it notices
//   {"op":"config","staleThreshold"?:6,"reopenDelay"?:500}  ConnectionMonitor.staleThreshold (s) and
//                                                          Connection.reopenDelay (ms), process-wide
//   {"op":"exit"}
// Events:
//   {"ev":"ready"}
//   {"ev":"open","c","protocol"}                 WebSocket open (each attempt), chosen subprotocol
//   {"ev":"connected","c","reconnected":bool,"count":n}   a {"type":"welcome"} frame (count: welcomes so far)
//   {"ev":"http_error","c","status"}             upgrade refused (e.g. 404 for a bad Origin or path)
//   {"ev":"error","c","message"}                 WebSocket error (connection refused, ...)
//   {"ev":"close","c","code","reason"}           WebSocket closed (1006 when it never opened or was dropped)
//   {"ev":"disconnected","c","opened","reason","reconnect","willAttemptReconnect","code"}
//        after every close of a socket (opened: it had opened): reason/reconnect from the server's
//        {"type":"disconnect",...} frame on that socket (null when there was none), and whether the
//        library's monitor will try again
//   {"ev":"confirm","c","identifier","reconnected"}    subscription connected() (confirm_subscription)
//   {"ev":"reject","c","identifier"}                   subscription rejected() (reject_subscription)
//   {"ev":"sub_disconnected","c","identifier","willAttemptReconnect"}  subscription disconnected()
//   {"ev":"received","c","identifier","data"}          subscription received(data): a broadcast or transmit
//   {"ev":"frame","c","dir":"in"|"out","data":string}  raw text frames (connect with frames:true)
//   {"ev":"cmd_error","c"?,"op"?,"message"}            a command could not be carried out
//   {"ev":"exception","message"}                       the library threw (e.g. on a non-JSON frame)
'use strict';
const readline = require('readline');
const WebSocket = require('ws');

// Browser globals @rails/actioncable touches (ConnectionMonitor, visibility handling).
globalThis.addEventListener = globalThis.addEventListener || (() => {});
globalThis.removeEventListener = globalThis.removeEventListener || (() => {});
globalThis.document = globalThis.document || { visibilityState: 'visible' };

const AC = require('@rails/actioncable');

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const log = (...a) => console.error(new Date().toISOString(), ...a);

// The library logs through adapters.logger (console by default, i.e. stdout): keep stdout clean.
AC.adapters.logger = { log: (...a) => console.error(new Date().toISOString(), ...a) };
AC.logger.enabled = true;

const clients = new Map(); // name -> { consumer, opts, ws, subs: Map<wireId, Subscription>, welcomes }

function need(cmd, field) {
  if (cmd[field] === undefined) throw new Error(`${cmd.op}: missing "${field}"`);
  return cmd[field];
}
function client(cmd) {
  const st = clients.get(need(cmd, 'c'));
  if (!st) throw new Error(`${cmd.op}: no client "${cmd.c}"`);
  return st;
}
function params(identifier) {
  if (typeof identifier === 'string') return { channel: identifier };
  if (identifier && typeof identifier === 'object' && !Array.isArray(identifier)) return identifier;
  throw new Error('identifier must be an object {channel, ...} or a channel name');
}
function idObject(wireId) {
  try {
    return JSON.parse(wireId);
  } catch (_) {
    return wireId;
  }
}
function subscription(cmd) {
  const st = client(cmd);
  const wireId = JSON.stringify(params(need(cmd, 'identifier')));
  const sub = st.subs.get(wireId);
  if (!sub) throw new Error(`${cmd.op}: client "${cmd.c}" has no subscription ${wireId}`);
  return sub;
}

// A WebSocket class for one client: ws with that client's Origin and headers, reporting frames
// and closes. The library constructs it as new WebSocket(url, protocols) on every (re)open.
function socketClass(name, st) {
  return class DriverWebSocket extends WebSocket {
    constructor(url, protocols) {
      const wsOpts = { headers: { ...(st.opts.headers || {}) } };
      if (st.opts.origin !== null) wsOpts.origin = st.opts.origin === undefined ? 'http://127.0.0.1' : st.opts.origin;
      super(url, protocols, wsOpts);
      st.ws = this;
      let disconnectFrame = null;
      let opened = false;
      this.on('open', () => {
        opened = true;
        out({ ev: 'open', c: name, protocol: this.protocol });
      });
      this.on('message', (data, isBinary) => {
        const text = data.toString();
        let msg = null;
        try {
          msg = JSON.parse(text);
        } catch (_) {
          /* not JSON: the library will throw on it; still report the frame */
        }
        const isPing = msg && msg.type === 'ping';
        if (st.opts.frames && (!isPing || st.opts.pings)) out({ ev: 'frame', c: name, dir: 'in', data: text, binary: isBinary || undefined });
        if (msg && msg.type === 'welcome') {
          st.welcomes += 1;
          out({ ev: 'connected', c: name, reconnected: st.welcomes > 1, count: st.welcomes });
        }
        if (msg && msg.type === 'disconnect') disconnectFrame = { reason: msg.reason === undefined ? null : msg.reason, reconnect: msg.reconnect === undefined ? null : msg.reconnect };
      });
      // A refused upgrade: ws fails the handshake with this error, then closes with 1006.
      this.on('error', (e) => {
        const message = e && e.message;
        const m = /^Unexpected server response: (\d+)/.exec(message || '');
        if (m) out({ ev: 'http_error', c: name, status: Number(m[1]) });
        out({ ev: 'error', c: name, message });
      });
      this.on('close', (code, reason) => {
        out({ ev: 'close', c: name, code, reason: reason ? reason.toString() : '' });
        // After the library's own onclose handler ran (registered later, runs later).
        setImmediate(() => {
          const monitor = st.consumer && st.consumer.connection.monitor;
          out({
            ev: 'disconnected',
            c: name,
            opened,
            reason: disconnectFrame ? disconnectFrame.reason : null,
            reconnect: disconnectFrame ? disconnectFrame.reconnect : null,
            willAttemptReconnect: Boolean(monitor && monitor.isRunning()),
            code,
          });
        });
      });
    }

    send(data, ...rest) {
      if (st.opts.frames) out({ ev: 'frame', c: name, dir: 'out', data: String(data) });
      return super.send(data, ...rest);
    }
  };
}

function connect(cmd) {
  const name = need(cmd, 'c');
  const url = need(cmd, 'url');
  const old = clients.get(name);
  if (old) closeClient(old);
  const st = {
    consumer: null,
    opts: {
      origin: cmd.origin,
      headers: cmd.headers || {},
      frames: Boolean(cmd.frames),
      pings: Boolean(cmd.pings),
    },
    ws: null,
    subs: new Map(),
    welcomes: 0,
  };
  const WS = socketClass(name, st);
  const consumer = AC.createConsumer(url);
  for (const p of cmd.subprotocols || []) consumer.addSubProtocol(p);
  // adapters.WebSocket is global; set this client's class right before each (re)open. The
  // library's reopen timer calls this.open through the instance property, so this wraps both.
  const conn = consumer.connection;
  const open = conn.open;
  conn.open = () => {
    AC.adapters.WebSocket = WS;
    return open();
  };
  st.consumer = consumer;
  clients.set(name, st);
  consumer.connect();
}

function subscribe(cmd) {
  const st = client(cmd);
  const name = cmd.c;
  const p = params(need(cmd, 'identifier'));
  const wireId = JSON.stringify(p);
  if (st.subs.has(wireId)) throw new Error(`subscribe: client "${name}" already has ${wireId}`);
  const sub = st.consumer.subscriptions.create(p, {
    connected(info) {
      out({ ev: 'confirm', c: name, identifier: idObject(wireId), reconnected: Boolean(info && info.reconnected) });
    },
    rejected() {
      st.subs.delete(wireId);
      out({ ev: 'reject', c: name, identifier: idObject(wireId) });
    },
    disconnected(info) {
      out({ ev: 'sub_disconnected', c: name, identifier: idObject(wireId), willAttemptReconnect: Boolean(info && info.willAttemptReconnect) });
    },
    received(data) {
      out({ ev: 'received', c: name, identifier: idObject(wireId), data });
    },
  });
  st.subs.set(wireId, sub);
}

function rawSend(cmd) {
  const st = client(cmd);
  const data = need(cmd, 'data');
  const ws = st.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) throw new Error(`raw_send: client "${cmd.c}" has no open socket`);
  ws.send(typeof data === 'string' ? data : JSON.stringify(data));
}

function closeClient(st) {
  try {
    st.consumer.disconnect();
  } catch (e) {
    log('disconnect failed', e);
  }
  if (st.ws && st.ws.readyState === WebSocket.CONNECTING) st.ws.terminate();
}

function handle(cmd) {
  switch (cmd.op) {
    case 'connect': return connect(cmd);
    case 'subscribe': return subscribe(cmd);
    case 'perform': {
      const sub = subscription(cmd);
      if (!sub.perform(need(cmd, 'action'), { ...(cmd.data || {}) })) throw new Error(`perform: client "${cmd.c}" is not connected`);
      return;
    }
    case 'send': {
      const sub = subscription(cmd);
      if (!sub.send(need(cmd, 'data'))) throw new Error(`send: client "${cmd.c}" is not connected`);
      return;
    }
    case 'unsubscribe': {
      const sub = subscription(cmd);
      client(cmd).subs.delete(sub.identifier);
      sub.unsubscribe();
      return;
    }
    case 'disconnect': return closeClient(client(cmd));
    case 'reconnect': return void client(cmd).consumer.connect();
    case 'raw_send': return rawSend(cmd);
    case 'drop': {
      const st = client(cmd);
      if (!st.ws) throw new Error(`drop: client "${cmd.c}" has no socket`);
      st.ws.terminate();
      return;
    }
    case 'config': {
      if (cmd.staleThreshold !== undefined) AC.ConnectionMonitor.staleThreshold = Number(cmd.staleThreshold);
      if (cmd.reopenDelay !== undefined) AC.Connection.reopenDelay = Number(cmd.reopenDelay);
      return;
    }
    case 'exit': return exit(0);
    default: throw new Error(`unknown op ${JSON.stringify(cmd.op)}`);
  }
}

function exit(code) {
  for (const st of clients.values()) closeClient(st);
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
// The library's handlers throw on frames that are not JSON: report, keep the driver alive.
process.on('uncaughtException', (e) => {
  log('uncaught exception', e);
  out({ ev: 'exception', message: e && e.message });
});
out({ ev: 'ready' });
