#!/usr/bin/env node
// JSON-lines driver around socket.io-client 4.8 so Rust tests can script many Socket.IO
// clients from one process. One JSON object per line: commands on stdin, events on stdout.
// Every command names its client with "c". Binary values are {"$bin":"<base64>"} both ways.
//
// Commands:
//   {"op":"connect","c","url","path"?,"auth"?,"query"?,"transports"?:["websocket"]|null,
//    "namespace"?:"/","reconnection"?:false,"extraHeaders"?:{},"timeoutMs"?:n}
//        transports null/absent = library default (polling, then upgrade to websocket)
//   {"op":"emit","c","event","args":[...],"ack"?:bool,"timeoutMs"?:5000,"reqId"?:any}
//   {"op":"ack","c","ackId","args":[...]}   answer a server event that asked for an ack
//   {"op":"disconnect","c"}                 socket.disconnect() (client-side close)
//   {"op":"close_transport","c"}            abruptly close the engine's transport
//   {"op":"exit"}
// Events:
//   {"ev":"ready"}
//   {"ev":"connect","c","id","transport"}
//   {"ev":"connect_error","c","message","data"}
//   {"ev":"event","c","event","args","ackId"?}     (ackId when the server asked for an ack)
//   {"ev":"ack","c","reqId"?,"args"} | {"ev":"ack","c","reqId"?,"err":"operation has timed out"}
//   {"ev":"disconnect","c","reason","description"?}
//   {"ev":"transport","c","name"}                  engine upgraded (e.g. polling -> websocket)
//   {"ev":"cmd_error","c"?,"op"?,"message"}         a command could not be carried out
'use strict';
const readline = require('readline');
const { io } = require('socket.io-client');

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const log = (...a) => console.error(new Date().toISOString(), ...a);

function toJson(v) {
  if (Buffer.isBuffer(v)) return { $bin: v.toString('base64') };
  if (v instanceof ArrayBuffer) return { $bin: Buffer.from(v).toString('base64') };
  if (ArrayBuffer.isView(v)) return { $bin: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') };
  if (typeof v === 'function') return { $fn: true };
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

const clients = new Map(); // name -> { socket, acks: Map<id, fn>, nextAck }

function need(cmd, field) {
  if (cmd[field] === undefined) throw new Error(`${cmd.op}: missing "${field}"`);
  return cmd[field];
}
function client(cmd) {
  const c = clients.get(need(cmd, 'c'));
  if (!c) throw new Error(`${cmd.op}: no client "${cmd.c}"`);
  return c;
}

function connect(cmd) {
  const name = need(cmd, 'c');
  const url = need(cmd, 'url');
  const old = clients.get(name);
  if (old) old.socket.close();
  let ns = cmd.namespace || '/';
  if (!ns.startsWith('/')) ns = '/' + ns;
  const base = url.replace(/\/+$/, '');
  const opts = {
    forceNew: true,
    reconnection: cmd.reconnection === true,
    auth: cmd.auth || {},
    query: cmd.query || {},
  };
  if (cmd.path) opts.path = cmd.path;
  if (Array.isArray(cmd.transports)) opts.transports = cmd.transports;
  if (cmd.extraHeaders) opts.extraHeaders = cmd.extraHeaders;
  if (cmd.timeoutMs) opts.timeout = cmd.timeoutMs;
  if (cmd.options && typeof cmd.options === 'object') Object.assign(opts, cmd.options);
  const socket = io(ns === '/' ? base : base + ns, opts);
  const st = { socket, acks: new Map(), nextAck: 1 };
  clients.set(name, st);

  socket.io.on('open', () => {
    const engine = socket.io.engine;
    engine.on('upgrade', (t) => out({ ev: 'transport', c: name, name: t && t.name ? t.name : engine.transport.name }));
  });
  socket.on('connect', () => {
    out({ ev: 'connect', c: name, id: socket.id, transport: socket.io.engine && socket.io.engine.transport.name });
  });
  socket.on('connect_error', (err) => {
    out({ ev: 'connect_error', c: name, message: err && err.message, data: toJson(err && err.data !== undefined ? err.data : null) });
  });
  socket.on('disconnect', (reason, details) => {
    const ev = { ev: 'disconnect', c: name, reason };
    if (details && details.description !== undefined) ev.description = String(details.description && details.description.message || details.description);
    out(ev);
  });
  socket.onAny((event, ...args) => {
    const ev = { ev: 'event', c: name, event };
    if (args.length && typeof args[args.length - 1] === 'function') {
      const fn = args.pop();
      const id = st.nextAck++;
      st.acks.set(id, fn);
      ev.ackId = id;
    }
    ev.args = toJson(args);
    out(ev);
  });
}

function emit(cmd) {
  const { socket } = client(cmd);
  const event = need(cmd, 'event');
  const args = fromJson(Array.isArray(cmd.args) ? cmd.args : []);
  if (cmd.ack) {
    const ms = Number(cmd.timeoutMs) || 5000;
    socket.timeout(ms).emit(event, ...args, (err, ...resp) => {
      const ev = { ev: 'ack', c: cmd.c };
      if (cmd.reqId !== undefined) ev.reqId = cmd.reqId;
      if (err) ev.err = err.message || String(err);
      else ev.args = toJson(resp);
      out(ev);
    });
  } else {
    socket.emit(event, ...args);
  }
}

function answerAck(cmd) {
  const st = client(cmd);
  const id = need(cmd, 'ackId');
  const fn = st.acks.get(id);
  if (!fn) throw new Error(`ack: no pending ack ${id}`);
  st.acks.delete(id);
  fn(...fromJson(Array.isArray(cmd.args) ? cmd.args : []));
}

function handle(cmd) {
  switch (cmd.op) {
    case 'connect': return connect(cmd);
    case 'emit': return emit(cmd);
    case 'ack': return answerAck(cmd);
    case 'disconnect': return void client(cmd).socket.disconnect();
    case 'close_transport': {
      const e = client(cmd).socket.io.engine;
      if (e && e.transport) e.transport.close();
      return;
    }
    case 'exit': return exit(0);
    default: throw new Error(`unknown op ${JSON.stringify(cmd.op)}`);
  }
}

function exit(code) {
  for (const { socket } of clients.values()) socket.close();
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
