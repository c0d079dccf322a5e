// Express 4 with method-override (the three override headers and the
// `_method` query getter its README shows), behind authgate in
// tests/differential.rs. Every answer says which route matched and how the
// request arrived: {program, route, class, method (after overriding),
// originalMethod, url, path, params, headers}.
'use strict';

const express = require('express');
const methodOverride = require('method-override');
const { routes, rawHeaders, listen } = require('./routes');

const app = express(); // defaults: case-insensitive, not strict
app.disable('x-powered-by');
app.use(methodOverride('X-HTTP-Method-Override'));
app.use(methodOverride('X-HTTP-Method'));
app.use(methodOverride('X-Method-Override'));
app.use(methodOverride('_method'));

for (const [pattern, cls] of routes) {
  const p = pattern === '(.*)' ? '*' : pattern.replace('/(.*)', '/*');
  app.all(p, (req, res) => {
    res.set('X-Diff-Program', 'express');
    res.json({
      program: 'express',
      route: pattern,
      class: cls,
      method: req.method,
      originalMethod: req.originalMethod,
      url: req.originalUrl,
      path: req.path,
      params: req.params,
      headers: rawHeaders(req),
    });
  });
}

listen(require('http').createServer(app), 'express_app');
