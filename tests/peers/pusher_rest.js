#!/usr/bin/env node
// The Pusher Channels HTTP API through the official server library (pusher@5.3.4), for tests:
// signed requests to soketi (or anything speaking that API) on 127.0.0.1.
//
// CLI:   node pusher_rest.js '<request JSON>'   prints one JSON line {"status","body"} and exits 0
//        (also for HTTP errors; exit 1 only when the request could not be made at all:
//        {"error": "<message>"}). Also a module: require('./pusher_rest').run(req) -> Promise.
//
// Request: {"port", "host"?:"127.0.0.1", "appId"?:"app-id", "key"?:"app-key",
//           "secret"?:"app-secret", "op", ...}
//   op "trigger":  "channel" (string or array), "event", "data" (any JSON; the library sends it
//                  JSON-encoded as a string, unless it already is a string), "socketId"? (exclude
//                  that connection), "info"? ("subscription_count,user_count")
//   op "batch":    "batch": [{"channel","event","data","socket_id"?,"info"?}, ...]
//   op "get":      "path" (e.g. "/channels", "/channels/presence-x/users"), "params"?: {...}
//                  (signed GET /apps/<appId><path>)
//   op "post":     "path", "body" (signed POST /apps/<appId><path>)
//   op "auth":     no request: the subscription auth for "socketId" and "channel" (private-*,
//                  presence-* with "userId" and "userInfo"?), as an auth endpoint would answer:
//                  {"status":200,"body":{"auth":"<key>:<hmac>","channel_data"?}}
// body is the parsed JSON answer when it is JSON, else the text.
'use strict';
const PusherServer = require('pusher');

function client(req) {
  if (req.port === undefined) throw new Error('missing "port"');
  return new PusherServer({
    appId: String(req.appId || 'app-id'),
    key: req.key || 'app-key',
    secret: req.secret || 'app-secret',
    host: req.host || '127.0.0.1',
    port: String(req.port),
    useTLS: false,
    timeout: req.timeoutMs || 10000,
  });
}

async function answer(res) {
  const text = await res.text();
  let body = text;
  try {
    body = JSON.parse(text);
  } catch (e) {
    // not JSON: keep the text
  }
  return { status: res.status, body };
}

async function run(req) {
  const p = client(req);
  try {
    switch (req.op) {
      case 'auth': {
        const data = req.userId === undefined ? undefined : { user_id: String(req.userId), user_info: req.userInfo };
        return { status: 200, body: p.authorizeChannel(req.socketId, req.channel, data) };
      }
      case 'trigger': {
        const params = {};
        if (req.socketId) params.socket_id = req.socketId;
        if (req.info) params.info = req.info;
        return await answer(await p.trigger(req.channel, req.event, req.data === undefined ? {} : req.data, params));
      }
      case 'batch':
        return await answer(await p.triggerBatch(req.batch || []));
      case 'get':
        return await answer(await p.get({ path: req.path, params: req.params || {} }));
      case 'post':
        return await answer(await p.post({ path: req.path, body: req.body === undefined ? {} : req.body }));
      default:
        throw new Error(`unknown op ${JSON.stringify(req.op)}`);
    }
  } catch (e) {
    // pusher's RequestError carries the HTTP status and body of a non-2xx answer.
    if (e && e.status !== undefined && e.status !== null) {
      let body = e.body;
      try {
        body = JSON.parse(e.body);
      } catch (x) {
        // keep the text
      }
      return { status: e.status, body };
    }
    throw e;
  }
}

module.exports = { run };

if (require.main === module) {
  let req;
  try {
    req = JSON.parse(process.argv[2] || '{}');
  } catch (e) {
    process.stdout.write(JSON.stringify({ error: `bad JSON: ${e.message}` }) + '\n');
    process.exit(1);
  }
  run(req).then(
    (r) => process.stdout.write(JSON.stringify(r) + '\n'),
    (e) => {
      process.stdout.write(JSON.stringify({ error: String((e && e.message) || e) }) + '\n');
      process.exitCode = 1;
    },
  );
}
