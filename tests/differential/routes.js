// The route table both Node apps register, in order (first match answers).
// Every admin and content-API prefix of authgate's default config
// (src/config.rs RawRoutes::default) gets a few Strapi-shaped routes with
// params, then a per-prefix wildcard; one catch-all ends the list. Each
// entry: [pattern, class]. Patterns use the syntax both routers accept
// (path-to-regexp 0.1 for Express 4, 6 for @koa/router 12).
'use strict';

const ADMIN = ['/admin', '/content-manager', '/content-type-builder', '/upload', '/users-permissions', '/i18n', '/email'];
const CONTENT = ['/api', '/graphql'];

const routes = [
  ['/admin/users', 'admin'],
  ['/admin/users/:id', 'admin'],
  ['/admin/roles/:id/permissions', 'admin'],
  ['/content-manager/collection-types/:model', 'admin'],
  ['/content-manager/collection-types/:model/:id', 'admin'],
  ['/content-type-builder/content-types/:uid', 'admin'],
  ['/upload/files', 'admin'],
  ['/upload/files/:id', 'admin'],
  ['/users-permissions/roles/:id', 'admin'],
  ['/i18n/locales/:id', 'admin'],
  ['/email/settings', 'admin'],
  ['/api/upload/files/:id', 'content-api'],
  ['/api/:plural', 'content-api'],
  ['/api/:plural/:id', 'content-api'],
  ['/graphql', 'content-api'],
];
for (const p of ADMIN) routes.push([p, 'admin'], [`${p}/(.*)`, 'admin']);
for (const p of CONTENT) routes.push([p, 'content-api'], [`${p}/(.*)`, 'content-api']);
routes.push(['(.*)', 'other']);

// The headers exactly as they arrived: lower-case name -> every value.
function rawHeaders(req) {
  const out = {};
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i].toLowerCase();
    (out[name] = out[name] || []).push(req.rawHeaders[i + 1]);
  }
  return out;
}

// Requests the router never sees still arrived: CONNECT (Node hands it to
// a 'connect' listener) and what Node's parser refuses (lowercase or
// unknown methods, control bytes in header values). Answer those too, with
// the request line as far as it goes, so the test sees what reached us.
function reportUnrouted(server, program) {
  const answer = (socket, status, fields) => {
    const body = JSON.stringify({ program, route: '', class: '', headers: {}, ...fields });
    socket.end(
      `HTTP/1.1 ${status} Unrouted\r\nX-Diff-Program: ${program}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  };
  server.on('connect', (req, socket) => {
    answer(socket, 405, { route: '(connect)', method: req.method, url: req.url, headers: rawHeaders(req) });
  });
  server.on('clientError', (err, socket) => {
    if (!socket.writable) return;
    const line = (err.rawPacket || Buffer.alloc(0)).toString('latin1').split('\r\n')[0].split(' ');
    answer(socket, 400, { route: `(parse error ${err.code})`, method: line[0] || '', url: line[1] || '' });
  });
}

// Listen on the port given as argv[2] (0 = any), print it on stdout.
function listen(server, name) {
  reportUnrouted(server, name.replace('_app', ''));
  const port = Number(process.argv[2] || 0);
  server.on('error', (e) => {
    console.error(`${name}: cannot listen on 127.0.0.1:${port}: ${e.code || e.message}`);
    process.exit(1);
  });
  server.listen(port, '127.0.0.1', () => {
    console.log(server.address().port);
  });
  // The test owns us: end when it closes our stdin (or kills us).
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}

module.exports = { routes, rawHeaders, listen, ADMIN, CONTENT };
