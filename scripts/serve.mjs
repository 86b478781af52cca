// `npm run demo`: serves the repository on http://127.0.0.1:<port>/ (default 8080; PORT=… to change) with HTTP
// Range support, which the library's URL loader uses to fetch only the bytes of the weights it needs.
import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const port = Number(process.env.PORT ?? 8080);
const MIME = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.map': 'application/json; charset=utf-8',
  '.json': 'application/json; charset=utf-8', '.css': 'text/css; charset=utf-8', '.png': 'image/png', '.svg': 'image/svg+xml',
  '.md': 'text/plain; charset=utf-8', '.txt': 'text/plain; charset=utf-8', '.wgsl': 'text/plain; charset=utf-8',
};

const server = createServer((req, res) => {
  let path;
  try {
    path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
  } catch {
    return end(res, 400);
  }
  if (path === '/') return redirect(res, '/examples/');
  let file = resolve(root, '.' + normalize(path));
  if (file !== root && !file.startsWith(root + sep)) return end(res, 403);
  if (req.method !== 'GET' && req.method !== 'HEAD') return end(res, 405);
  if (existsSync(file) && statSync(file).isDirectory()) {
    if (!path.endsWith('/')) return redirect(res, path + '/');
    file = join(file, 'index.html');
  }
  if (!existsSync(file) || !statSync(file).isFile()) return end(res, 404);
  const size = statSync(file).size;
  let start = 0;
  let last = size - 1;
  const range = req.headers.range;
  if (range) {
    const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
    if (m && m[1] !== '') {
      start = Number(m[1]);
      last = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
    } else if (m && m[2] !== '') {
      start = Math.max(0, size - Number(m[2]));
    }
    if (!m || start >= size || last < start) {
      res.setHeader('Content-Range', `bytes */${size}`);
      return end(res, 416);
    }
    res.statusCode = 206;
    res.setHeader('Content-Range', `bytes ${start}-${last}/${size}`);
  }
  res.setHeader('Content-Type', MIME[extname(file).toLowerCase()] ?? 'application/octet-stream');
  res.setHeader('Content-Length', last - start + 1);
  res.setHeader('Accept-Ranges', 'bytes');
  res.setHeader('Cache-Control', 'no-cache');
  if (req.method === 'HEAD' || size === 0) return res.end();
  createReadStream(file, { start, end: last }).on('error', () => res.destroy()).pipe(res);
});

function end(res, status) {
  res.statusCode = status;
  res.setHeader('Content-Length', 0);
  res.end();
}

function redirect(res, to) {
  res.statusCode = 302;
  res.setHeader('Location', to);
  res.end();
}

server.listen(port, '127.0.0.1', () => {
  console.log(`fmboost demos: http://127.0.0.1:${port}/examples/text-to-image/  and  http://127.0.0.1:${port}/examples/upscale/`);
});
