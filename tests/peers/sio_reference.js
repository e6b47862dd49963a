#!/usr/bin/env node
// The reference application of the Socket.IO protocol test suite (socketio/socket.io-protocol,
// `test-suite/`), on socket.io 4.8: what a socketio → socketio route must be invisible to.
//
// Usage: node sio_reference.js <port|0> [--ping-interval ms] [--ping-timeout ms]
// Listens on 127.0.0.1 only and prints `READY <port>` on stdout once listening (port 0 picks a
// free port). Defaults: pingInterval 300 ms, pingTimeout 200 ms, as the suite expects.
//
// Namespaces `/` and `/custom`, the same handlers on both:
//   - on connect: emit `auth` with `socket.handshake.auth`;
//   - `message`: emit `message-back` with the same arguments (binary included);
//   - `message-with-ack`: ack with the same arguments (binary included);
//   - `ask`: emit `question` with the same arguments and an ack callback; what the client
//     answers is emitted back as `answer` with the answer's arguments (the backend's acks);
//   - `leave`: the server disconnects this namespace's socket (`41` to the client).
// Unknown namespaces are refused by socket.io (`44/<nsp>,{"message":"Invalid namespace"}`);
// `/forbidden` is refused by a middleware with message `nope` and data `{"why":"test"}`.
// Every namespace connection is logged on stdout as `CONNECT {nsp, conn, auth}` (`conn`: the
// Engine.IO connection id), every received event as `EVENT {nsp, event, args, ack}` (binary
// arguments as `{bin:[..]}`, `ack`: whether it asked for one).
'use strict';
const http = require('http');
const { Server } = require('socket.io');

const opts = { port: 0, pingInterval: 300, pingTimeout: 200 };
const rest = process.argv.slice(2);
for (let i = 0; i < rest.length; i++) {
  const a = rest[i];
  if (a === '--ping-interval') opts.pingInterval = Number(rest[++i]);
  else if (a === '--ping-timeout') opts.pingTimeout = Number(rest[++i]);
  else if (/^\d+$/.test(a)) opts.port = Number(a);
  else throw new Error(`unknown argument ${a}`);
}

const httpServer = http.createServer();
const io = new Server(httpServer, {
  pingInterval: opts.pingInterval,
  pingTimeout: opts.pingTimeout,
});

function log(nsp, event, args, ack) {
  const shape = args.map((a) => (Buffer.isBuffer(a) ? { bin: [...a] } : a));
  process.stdout.write(`EVENT ${JSON.stringify({ nsp, event, args: shape, ack })}\n`);
}

function onConnect(socket) {
  const nsp = socket.nsp.name;
  // Which Engine.IO connection the namespace was joined over (multiplexing is visible here).
  process.stdout.write(`CONNECT ${JSON.stringify({ nsp, conn: socket.conn.id, auth: socket.handshake.auth })}\n`);
  socket.emit('auth', socket.handshake.auth);
  socket.on('message', (...args) => {
    log(nsp, 'message', args, false);
    socket.emit('message-back', ...args);
  });
  socket.on('message-with-ack', (...args) => {
    const ack = args.pop();
    log(nsp, 'message-with-ack', args, typeof ack === 'function');
    ack(...args);
  });
  socket.on('ask', (...args) => {
    log(nsp, 'ask', args, false);
    socket.emit('question', ...args, (...answer) => socket.emit('answer', ...answer));
  });
  socket.on('leave', () => socket.disconnect());
}

io.of('/').on('connection', onConnect);
io.of('/custom').on('connection', onConnect);
io.of('/forbidden').use((_socket, next) => {
  const err = new Error('nope');
  err.data = { why: 'test' };
  next(err);
});

httpServer.listen(opts.port, '127.0.0.1', () => {
  process.stdout.write(`READY ${httpServer.address().port}\n`);
});
