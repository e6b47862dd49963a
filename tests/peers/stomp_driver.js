#!/usr/bin/env node
// JSON-lines driver around @stomp/stompjs 7.5 (over ws@8) so Rust tests can script many STOMP
// clients from one process. One JSON object per line: commands on stdin, events on stdout.
// Every command names its client with "c".
//
// Commands:
//   {"op":"connect","c","url","headers"?:{login,passcode,host,...},"wsHeaders"?:{Authorization..},
//    "heartbeatIncoming"?:ms,"heartbeatOutgoing"?:ms,"protocols"?:["v12.stomp","v11.stomp","v10.stomp"],
//    "versions"?:["1.2","1.1"],"connectionTimeout"?:ms,"options"?:{...any stompjs Client option},
//    "localAddress"?:"127.0.0.2"}   localAddress: the address to connect from (raw too)
//   {"op":"subscribe","c","id","destination","headers"?:{},"binary"?:bool}
//        "binary":true reports binaryBase64 for every MESSAGE of this subscription
//   {"op":"unsubscribe","c","id","headers"?:{}}
//   {"op":"send","c","destination","body"?,"binaryBodyBase64"?,"headers"?:{},"skipContentLengthHeader"?:bool}
//   {"op":"ack"|"nack","c","sub"?,"messageId"?,"headers"?:{}}
//        acks the message with that message-id, else the last message of subscription "sub",
//        else the client's last message
//   {"op":"begin"|"commit"|"abort","c","transaction"}       (transactions, rarely needed)
//   {"op":"disconnect","c","headers"?:{}}       graceful: DISCONNECT, wait for its RECEIPT, close
//   {"op":"force_disconnect","c"}               drop the WebSocket without DISCONNECT
//   {"op":"raw","c","url","protocols"?:[..],"wsHeaders"?:{},"frames":["CONNECT\n...\u0000", ...]}
//        bare ws connection; each frame is sent as a text message ({"$bin":base64} = binary)
//   {"op":"raw_send","c","frames":[...]}        more frames on an open raw connection
//   {"op":"raw_close","c","code"?,"reason"?}    closing handshake (ws waits up to 30 s for the peer)
//   {"op":"raw_terminate","c"}                  destroy the socket at once (close event 1006)
//   {"op":"exit"}
// Events:
//   {"ev":"ready"}
//   {"ev":"connected","c","headers","protocol"}       protocol = negotiated ws subprotocol
//   {"ev":"message","c","sub","destination","headers","body","binaryBase64"?}
//        binaryBase64 when the body is not valid UTF-8, came in a binary ws message, or the
//        subscription asked for it
//   {"ev":"receipt","c","id"}
//   {"ev":"error","c","headers","body"}              STOMP ERROR frame
//   {"ev":"disconnected","c","headers"}              RECEIPT of our DISCONNECT
//   {"ev":"frame","c","command","headers","body"}    any other unhandled frame
//   {"ev":"open","c","protocol"}                     raw connection open
//   {"ev":"raw","c","data","binary"?,"dataBase64"?}  raw connection: every received message
//   {"ev":"close","c","code","reason"}
//   {"ev":"wserror","c","message"}
//   {"ev":"cmd_error","c"?,"op"?,"message"}          a command could not be carried out
'use strict';
const readline = require('readline');
const { Client, Versions } = require('@stomp/stompjs');
const WebSocket = require('ws');

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const log = (...a) => console.error(new Date().toISOString(), ...a);
const DEFAULT_PROTOCOLS = ['v12.stomp', 'v11.stomp', 'v10.stomp'];
const utf8 = new TextDecoder('utf-8', { fatal: true });

const stomps = new Map(); // name -> state
const raws = new Map(); // name -> ws

// The ws options of a connection: upgrade headers, and the local address to connect from
// (another loopback address, e.g. 127.0.0.2, is another client address to the proxy).
function wsOptions(cmd) {
  const o = { headers: strHeaders(cmd.wsHeaders) };
  if (cmd.localAddress) o.localAddress = String(cmd.localAddress);
  return o;
}

function need(cmd, field) {
  if (cmd[field] === undefined) throw new Error(`${cmd.op}: missing "${field}"`);
  return cmd[field];
}
function stompOf(cmd) {
  const st = stomps.get(need(cmd, 'c'));
  if (!st) throw new Error(`${cmd.op}: no STOMP client "${cmd.c}"`);
  return st;
}
function strHeaders(h) {
  const o = {};
  for (const [k, v] of Object.entries(h || {})) o[k] = String(v);
  return o;
}
function watchReceipt(st, headers) {
  if (headers && headers.receipt !== undefined) {
    const id = String(headers.receipt);
    st.client.watchForReceipt(id, () => out({ ev: 'receipt', c: st.name, id }));
  }
}
function toBuf(x) {
  if (Buffer.isBuffer(x)) return x;
  if (x instanceof ArrayBuffer) return Buffer.from(x);
  if (ArrayBuffer.isView(x)) return Buffer.from(x.buffer, x.byteOffset, x.byteLength);
  if (Array.isArray(x)) return Buffer.concat(x.map(toBuf));
  return Buffer.from(String(x));
}

function connect(cmd) {
  const name = need(cmd, 'c');
  const url = need(cmd, 'url');
  const old = stomps.get(name);
  if (old) old.client.forceDisconnect();
  const protocols = Array.isArray(cmd.protocols) ? cmd.protocols : DEFAULT_PROTOCOLS;
  const st = { name, client: null, subs: new Map(), lastBySub: new Map(), byId: new Map(), last: null, lastWsBinary: false, closed: false };
  const config = {
    webSocketFactory: () => {
      const ws = new WebSocket(url, protocols, wsOptions(cmd));
      // Registered before stompjs's onmessage, so it runs first for every ws message.
      ws.on('message', (_data, isBinary) => { st.lastWsBinary = isBinary; });
      return ws;
    },
    connectHeaders: strHeaders(cmd.headers),
    reconnectDelay: 0,
    debug: (s) => { if (process.env.STOMP_DEBUG) log(`[${name}]`, s); },
  };
  if (cmd.heartbeatIncoming !== undefined) config.heartbeatIncoming = Number(cmd.heartbeatIncoming);
  if (cmd.heartbeatOutgoing !== undefined) config.heartbeatOutgoing = Number(cmd.heartbeatOutgoing);
  if (cmd.connectionTimeout !== undefined) config.connectionTimeout = Number(cmd.connectionTimeout);
  if (Array.isArray(cmd.versions)) config.stompVersions = new Versions(cmd.versions);
  if (cmd.options && typeof cmd.options === 'object') Object.assign(config, cmd.options);
  const client = new Client(config);
  st.client = client;
  stomps.set(name, st);

  client.onConnect = (frame) => {
    out({ ev: 'connected', c: name, headers: frame.headers, protocol: client.webSocket && client.webSocket.protocol });
  };
  client.onStompError = (frame) => out({ ev: 'error', c: name, headers: frame.headers, body: frame.body });
  client.onDisconnect = (frame) => out({ ev: 'disconnected', c: name, headers: frame ? frame.headers : {} });
  client.onWebSocketClose = (evt) => {
    out({ ev: 'close', c: name, code: evt && evt.code, reason: evt && evt.reason !== undefined ? String(evt.reason) : '' });
    // No reconnects: make sure the client stays down.
    if (!st.closed) { st.closed = true; client.deactivate().catch(() => {}); }
  };
  client.onWebSocketError = (evt) => out({ ev: 'wserror', c: name, message: (evt && (evt.message || (evt.error && evt.error.message))) || String(evt) });
  client.onUnhandledMessage = (msg) => onMessage(st, msg.headers.subscription, msg);
  client.onUnhandledReceipt = (frame) => out({ ev: 'receipt', c: name, id: frame.headers['receipt-id'] });
  client.onUnhandledFrame = (frame) => out({ ev: 'frame', c: name, command: frame.command, headers: frame.headers, body: frame.body });
  client.activate();
}

function onMessage(st, subId, msg) {
  const sub = subId !== undefined ? subId : msg.headers.subscription;
  const bytes = Buffer.from(msg.binaryBody);
  let body;
  let binary = st.lastWsBinary || (st.subs.get(sub) || {}).binary === true;
  try {
    body = utf8.decode(bytes);
  } catch (_) {
    body = bytes.toString('utf8');
    binary = true;
  }
  const ev = { ev: 'message', c: st.name, sub, destination: msg.headers.destination, headers: msg.headers, body };
  if (binary) ev.binaryBase64 = bytes.toString('base64');
  st.last = msg;
  st.lastBySub.set(sub, msg);
  if (msg.headers['message-id'] !== undefined) st.byId.set(msg.headers['message-id'], msg);
  if (msg.headers.ack !== undefined) st.byId.set(msg.headers.ack, msg);
  out(ev);
}

function subscribe(cmd) {
  const st = stompOf(cmd);
  const id = String(need(cmd, 'id'));
  const headers = Object.assign(strHeaders(cmd.headers), { id });
  watchReceipt(st, headers);
  const sub = st.client.subscribe(need(cmd, 'destination'), (msg) => onMessage(st, id, msg), headers);
  st.subs.set(id, { sub, binary: cmd.binary === true });
}

function unsubscribe(cmd) {
  const st = stompOf(cmd);
  const id = String(need(cmd, 'id'));
  const headers = strHeaders(cmd.headers);
  watchReceipt(st, headers);
  const s = st.subs.get(id);
  if (s) {
    s.sub.unsubscribe(headers);
    st.subs.delete(id);
  } else {
    st.client.unsubscribe(id, headers);
  }
}

function send(cmd) {
  const st = stompOf(cmd);
  const headers = strHeaders(cmd.headers);
  watchReceipt(st, headers);
  const params = { destination: need(cmd, 'destination'), headers };
  if (cmd.binaryBodyBase64 !== undefined) params.binaryBody = new Uint8Array(Buffer.from(cmd.binaryBodyBase64, 'base64'));
  else params.body = cmd.body === undefined ? '' : String(cmd.body);
  if (cmd.skipContentLengthHeader) params.skipContentLengthHeader = true;
  st.client.publish(params);
}

function ackNack(cmd) {
  const st = stompOf(cmd);
  let msg = null;
  if (cmd.messageId !== undefined) msg = st.byId.get(String(cmd.messageId));
  else if (cmd.sub !== undefined) msg = st.lastBySub.get(String(cmd.sub));
  else msg = st.last;
  if (!msg) throw new Error(`${cmd.op}: no message to ${cmd.op}`);
  const headers = strHeaders(cmd.headers);
  watchReceipt(st, headers);
  if (cmd.op === 'ack') msg.ack(headers);
  else msg.nack(headers);
}

function disconnect(cmd) {
  const st = stompOf(cmd);
  // stompjs adds a receipt header when there is none and closes the socket on that RECEIPT
  // (reported as "disconnected"), or when the server closes first (RabbitMQ does).
  const headers = strHeaders(cmd.headers);
  if (Object.keys(headers).length) st.client.disconnectHeaders = headers;
  st.closed = true;
  st.client.deactivate().catch((e) => out({ ev: 'cmd_error', c: st.name, op: 'disconnect', message: e.message }));
}

function raw(cmd) {
  const name = need(cmd, 'c');
  const url = need(cmd, 'url');
  const old = raws.get(name);
  if (old) old.terminate();
  const protocols = Array.isArray(cmd.protocols) ? cmd.protocols : DEFAULT_PROTOCOLS;
  const ws = new WebSocket(url, protocols, wsOptions(cmd));
  raws.set(name, ws);
  ws.on('open', () => {
    out({ ev: 'open', c: name, protocol: ws.protocol });
    rawSendFrames(ws, cmd.frames);
  });
  ws.on('message', (data, isBinary) => {
    const buf = toBuf(data);
    const ev = { ev: 'raw', c: name, data: buf.toString('utf8') };
    if (isBinary) { ev.binary = true; ev.dataBase64 = buf.toString('base64'); }
    out(ev);
  });
  ws.on('close', (code, reason) => out({ ev: 'close', c: name, code, reason: reason ? reason.toString('utf8') : '' }));
  ws.on('error', (e) => out({ ev: 'wserror', c: name, message: e.message }));
}

function rawSendFrames(ws, frames) {
  for (const f of Array.isArray(frames) ? frames : []) {
    if (f && typeof f === 'object' && typeof f.$bin === 'string') ws.send(Buffer.from(f.$bin, 'base64'), { binary: true });
    else ws.send(String(f));
  }
}

function rawOf(cmd) {
  const ws = raws.get(need(cmd, 'c'));
  if (!ws) throw new Error(`${cmd.op}: no raw connection "${cmd.c}"`);
  return ws;
}

function handle(cmd) {
  switch (cmd.op) {
    case 'connect': return connect(cmd);
    case 'subscribe': return subscribe(cmd);
    case 'unsubscribe': return unsubscribe(cmd);
    case 'send': return send(cmd);
    case 'ack':
    case 'nack': return ackNack(cmd);
    case 'begin': return void stompOf(cmd).client.begin(need(cmd, 'transaction'));
    case 'commit': return void stompOf(cmd).client.commit(need(cmd, 'transaction'));
    case 'abort': return void stompOf(cmd).client.abort(need(cmd, 'transaction'));
    case 'disconnect': return disconnect(cmd);
    case 'force_disconnect': {
      const st = stompOf(cmd);
      st.closed = true;
      st.client.forceDisconnect();
      return;
    }
    case 'raw': return raw(cmd);
    case 'raw_send': return rawSendFrames(rawOf(cmd), cmd.frames);
    case 'raw_close': {
      const ws = rawOf(cmd);
      if (cmd.code !== undefined) ws.close(Number(cmd.code), cmd.reason === undefined ? undefined : String(cmd.reason));
      else ws.close();
      return;
    }
    case 'raw_terminate': return void rawOf(cmd).terminate();
    case 'exit': return exit(0);
    default: throw new Error(`unknown op ${JSON.stringify(cmd.op)}`);
  }
}

let exiting = false;
function exit(code) {
  if (exiting) return;
  exiting = true;
  for (const st of stomps.values()) { st.closed = true; st.client.forceDisconnect(); }
  for (const ws of raws.values()) ws.terminate();
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
