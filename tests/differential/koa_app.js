// Koa + @koa/router at the versions Strapi 5.54 runs, behind authgate in
// tests/differential.rs. Every answer says which route matched and how the
// request arrived: {program, route, class, method, url, path, params, headers}.
'use strict';

const Koa = require('koa');
const Router = require('@koa/router');
const { routes, rawHeaders, listen } = require('./routes');

const app = new Koa();
const router = new Router(); // Strapi's defaults: case-insensitive, not strict

for (const [pattern, cls] of routes) {
  router.all(pattern, (ctx) => {
    ctx.set('X-Diff-Program', 'koa');
    ctx.body = {
      program: 'koa',
      route: pattern,
      class: cls,
      method: ctx.method,
      url: ctx.originalUrl,
      path: ctx.path,
      params: ctx.params,
      headers: rawHeaders(ctx.req),
    };
  });
}
app.use(router.routes());
app.on('error', () => {}); // a client that hangs up is not news

listen(require('http').createServer(app.callback()), 'koa_app');
