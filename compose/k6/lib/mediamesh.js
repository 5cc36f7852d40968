// Shared parts of MediaMesh's load-test scenarios (compose/k6/*.js): the options of
// a scenario, the set-up that discovers ids and issues tokens, and the endpoint mix
// of the sizing guide.
//
// Environment:
//   BASE_URL        target, default http://localhost:8080 (nginx of the compose stack)
//   SCALE           multiplies rates and durations together (default 1)
//   RATE_SCALE      multiplies rates only (default SCALE)
//   DURATION_SCALE  multiplies durations only (default SCALE)
//   DURATION        fixed duration instead of the scaled one, e.g. 20s
//   EDITOR_TOKEN    access token with role editor, for the commands and the upload
//                   (`mediamesh token --role editor --subject k6`); required
//   AUTH_TOKENS     comma-separated access tokens for GET /v1/auth/me, in addition
//                   to those of the users set-up registers and logs in
//   USERS           users set-up registers and logs in (default 3)
//   LOGINS_PER_MINUTE  logins during the run (default 30: under the auth endpoints'
//                   limit of 100 per minute and client IP)
//
// Mix per request of the main scenario (the guide's): 60% discovery and search,
// 25% browse, 5% auth (GET /v1/auth/me with pre-issued tokens), 5% commands, 5% media.
// The logins run beside it as their own low-rate scenario.

import http from 'k6/http';
import { check, sleep } from 'k6';
import { b64decode } from 'k6/encoding';
import { Trend, Counter } from 'k6/metrics';

const BASE_URL = (__ENV.BASE_URL || 'http://localhost:8080').replace(/\/+$/, '');

function envNumber(name, dflt) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') {
    return dflt;
  }
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) {
    throw new Error(`${name}=${raw}: want a positive number`);
  }
  return n;
}

// parseSeconds reads "90", "90s", "5m", "2h" or "1h30m" as seconds.
export function parseSeconds(text) {
  const s = String(text).trim();
  if (/^\d+(\.\d+)?$/.test(s)) {
    return Number(s);
  }
  const re = /(\d+(?:\.\d+)?)(h|m|s)/g;
  let total = 0;
  let consumed = 0;
  let m;
  while ((m = re.exec(s)) !== null) {
    total += Number(m[1]) * { h: 3600, m: 60, s: 1 }[m[2]];
    consumed += m[0].length;
  }
  if (consumed !== s.length || total <= 0) {
    throw new Error(`DURATION=${text}: want e.g. 20s, 5m or 1h30m`);
  }
  return total;
}

const SCALE = envNumber('SCALE', 1);
const RATE_SCALE = envNumber('RATE_SCALE', SCALE);
const DURATION_SCALE = envNumber('DURATION_SCALE', SCALE);
const LOGINS_PER_MINUTE = envNumber('LOGINS_PER_MINUTE', 30);
const USERS = Math.round(envNumber('USERS', 3));
const PASSWORD = __ENV.USER_PASSWORD || 'k6-load-test-password';

// Latency per class of the mix, reported beside the overall thresholds.
const latency = {
  discovery: new Trend('mm_discovery_duration', true),
  browse: new Trend('mm_browse_duration', true),
  auth: new Trend('mm_auth_duration', true),
  command: new Trend('mm_command_duration', true),
  media: new Trend('mm_media_duration', true),
  login: new Trend('mm_login_duration', true),
};
const unexpected = new Counter('mm_unexpected_status');

// scenarioOptions returns a scenario's options: the main constant-arrival-rate
// scenario at baseRate requests/s for baseSeconds, both scaled, the logins beside
// it, and the guide's thresholds (p95 < 200 ms, p99 < 500 ms, errors < 0.1%).
export function scenarioOptions(name, baseRate, baseSeconds) {
  const rate = Math.max(1, Math.round(baseRate * RATE_SCALE));
  const seconds = __ENV.DURATION ? parseSeconds(__ENV.DURATION) : Math.max(1, Math.round(baseSeconds * DURATION_SCALE));
  const duration = `${seconds}s`;
  // VUs to hold the rate at 50 ms per request, and up to 0.5 s before iterations
  // are dropped (dropped_iterations in the summary).
  const preAllocatedVUs = Math.max(5, Math.ceil(rate * 0.05));
  const maxVUs = Math.max(20, Math.ceil(rate * 0.5));
  return {
    scenarios: {
      [name]: {
        executor: 'constant-arrival-rate',
        exec: 'traffic',
        rate,
        timeUnit: '1s',
        duration,
        preAllocatedVUs,
        maxVUs,
        gracefulStop: '10s',
      },
      logins: {
        executor: 'constant-arrival-rate',
        exec: 'login',
        rate: LOGINS_PER_MINUTE,
        timeUnit: '1m',
        duration,
        preAllocatedVUs: 2,
        maxVUs: 10,
        gracefulStop: '10s',
      },
    },
    thresholds: {
      // Set-up requests are tagged phase:setup and left out.
      'http_req_duration{phase:load}': ['p(95)<200', 'p(99)<500'],
      'http_req_failed{phase:load}': ['rate<0.001'],
    },
    summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
    setupTimeout: '120s',
    teardownTimeout: '30s',
    tags: { testid: `${name}-${rate}rps-${duration}` },
  };
}

// ---------------------------------------------------------------------- set-up

const setupParams = (extra) => Object.assign({ tags: { phase: 'setup' }, timeout: '10s' }, extra || {});

function json(res) {
  try {
    return res.json();
  } catch (e) {
    return null;
  }
}

// setupData discovers what the load will ask for (program, episode and category
// ids; media URLs) and issues the tokens. It fails only when there is no catalog
// to read: everything else missing shows up as failed requests in the thresholds.
export function setupData() {
  const ready = http.get(`${BASE_URL}/health/ready`, setupParams());
  if (ready.status !== 200) {
    console.warn(`GET /health/ready answered ${ready.status}: ${ready.body}`);
  }
  const editorToken = __ENV.EDITOR_TOKEN || '';
  if (!editorToken) {
    throw new Error('EDITOR_TOKEN is not set: mint one with `mediamesh token --role editor --subject k6` (in the compose stack: `docker compose -f compose/compose.yaml exec command mediamesh token --role editor --subject k6`)');
  }

  const programs = [];
  for (let page = 1; page <= 4; page++) {
    const res = http.get(`${BASE_URL}/v1/programs?limit=50&page=${page}&sort=recent`, setupParams());
    const body = json(res);
    if (res.status !== 200 || !body || !Array.isArray(body.items)) {
      console.warn(`GET /v1/programs page ${page} answered ${res.status}`);
      break;
    }
    for (const p of body.items) {
      programs.push(p.id);
    }
    if (body.items.length < 50) {
      break;
    }
  }
  if (programs.length === 0) {
    throw new Error(`no published program is visible at ${BASE_URL}/v1/programs: seed the catalog first (mediamesh seed --programs 200)`);
  }

  const episodes = [];
  for (const id of programs.slice(0, 20)) {
    const body = json(http.get(`${BASE_URL}/v1/programs/${id}/episodes?limit=50`, setupParams()));
    if (body && Array.isArray(body.items)) {
      for (const e of body.items) {
        episodes.push(e.id);
      }
    }
  }

  let categories = [];
  const cats = json(http.get(`${BASE_URL}/v1/categories`, setupParams()));
  if (Array.isArray(cats)) {
    categories = cats.map((c) => c.slug);
  }
  if (categories.length === 0) {
    categories = ['documentary', 'drama', 'comedy'];
  }

  return {
    programs,
    episodes,
    categories,
    authTokens: issueTokens(),
    editorToken,
    media: uploadMedia(editorToken, programs[0]),
  };
}

function userEmail(i) {
  return `k6-user-${i}@loadtest.mediamesh.invalid`;
}

// issueTokens registers USERS users (409 when they exist from an earlier run is
// fine) and logs each in once: the pre-issued tokens of GET /v1/auth/me.
function issueTokens() {
  const tokens = (__ENV.AUTH_TOKENS || '').split(',').map((t) => t.trim()).filter((t) => t !== '');
  const headers = { 'Content-Type': 'application/json' };
  for (let i = 1; i <= USERS; i++) {
    const reg = http.post(`${BASE_URL}/v1/auth/register`,
      JSON.stringify({ email: userEmail(i), password: PASSWORD, name: `k6 user ${i}` }),
      setupParams({ headers, responseCallback: http.expectedStatuses(201, 409) }));
    if (reg.status !== 201 && reg.status !== 409) {
      console.warn(`POST /v1/auth/register answered ${reg.status}: ${reg.body}`);
      continue;
    }
    const login = http.post(`${BASE_URL}/v1/auth/login`, JSON.stringify({ email: userEmail(i), password: PASSWORD }), setupParams({ headers }));
    const body = json(login);
    if (login.status === 200 && body && body.access_token) {
      tokens.push(body.access_token);
    } else {
      console.warn(`POST /v1/auth/login answered ${login.status}: ${login.body}`);
    }
  }
  if (tokens.length === 0) {
    console.warn('no access token for GET /v1/auth/me: those requests will fail (set AUTH_TOKENS or fix the auth endpoints)');
  }
  return tokens;
}

// A 64×64 PNG poster.
const POSTER_PNG = 'iVBORw0KGgoAAAANSUhEUgAAAEAAAABACAIAAAAlC+aJAAAAZElEQVR42u3ZwQkAMAgDQMdxCIftOB2rMygUCj3IO3jPYGSuVnZVK7f7AwAAAAAAAAAAAABgDHjtoG4/AAAAAAAAAAAAAMAcYJEBAAAAAAAAAAAA+A9YZAAAAAAAAAAAAADfAQ6Oh4EACs58TQAAAABJRU5ErkJggg==';

// uploadMedia stores a poster for programId and returns the URLs the media share
// of the mix requests: the original, plus every size already generated after a
// bounded wait.
function uploadMedia(editorToken, programId) {
  const res = http.post(`${BASE_URL}/v1/assets`, {
    file: http.file(b64decode(POSTER_PNG), 'poster.png', 'image/png'),
    kind: 'poster',
    program_id: programId,
  }, setupParams({ headers: { Authorization: `Bearer ${editorToken}`, 'Idempotency-Key': `k6-poster-${programId}` } }));
  const body = json(res);
  if ((res.status !== 201 && res.status !== 200) || !body || !body.urls || !body.urls.original) {
    console.warn(`POST /v1/assets answered ${res.status}: ${res.body}; the media requests will fail`);
    return [`${BASE_URL}/media/unavailable`];
  }
  const urls = [body.urls.original];
  const sizes = ['small', 'medium', 'large'].map((s) => body.urls[s]).filter((u) => u);
  for (let attempt = 0; attempt < 20 && sizes.length > 0; attempt++) {
    for (let i = sizes.length - 1; i >= 0; i--) {
      const r = http.get(sizes[i], setupParams({ responseCallback: http.expectedStatuses(200, 404) }));
      if (r.status === 200) {
        urls.push(sizes[i]);
        sizes.splice(i, 1);
      }
    }
    if (sizes.length > 0) {
      sleep(0.25);
    }
  }
  return urls;
}

// ---------------------------------------------------------------- the traffic

function pick(list) {
  return list[Math.floor(Math.random() * list.length)];
}

const SEARCH_TERMS = ['demo', 'program', 'episode', 'demo program', 'dmeo', 'documentary', 'drama', 'news'];
const LANGUAGES = ['en', 'fr', 'de', 'es'];

function get(url, cls, name, token) {
  const params = { tags: { phase: 'load', class: cls, name }, timeout: '10s', headers: { 'Accept-Encoding': 'gzip' } };
  if (token) {
    params.headers.Authorization = `Bearer ${token}`;
  }
  const res = http.get(url, params);
  latency[cls].add(res.timings.duration);
  if (!check(res, { [`${name} 2xx`]: (r) => r.status >= 200 && r.status < 300 })) {
    unexpected.add(1, { class: cls, status: String(res.status) });
  }
  return res;
}

// Program ids this VU created with POST /v1/programs, which its PATCHes change.
const ownDrafts = [];

function command(data) {
  const headers = {
    Authorization: `Bearer ${data.editorToken}`,
    'Content-Type': 'application/json',
    'Idempotency-Key': `k6-${__VU}-${__ITER}-${Date.now()}-${Math.random().toString(36).slice(2)}`,
  };
  const params = (name) => ({ headers, tags: { phase: 'load', class: 'command', name }, timeout: '10s' });
  let res;
  if (ownDrafts.length === 0 || Math.random() < 0.5) {
    res = http.post(`${BASE_URL}/v1/programs`, JSON.stringify({
      title: `k6 draft ${__VU}-${__ITER}`,
      description: 'Created by the load test; never published.',
      category: pick(data.categories),
      language: pick(LANGUAGES),
      tags: ['k6'],
    }), params('POST /v1/programs'));
    const body = json(res);
    if (res.status === 201 && body && body.id) {
      ownDrafts.push(body.id);
      if (ownDrafts.length > 50) {
        ownDrafts.shift();
      }
    }
  } else {
    res = http.patch(`${BASE_URL}/v1/programs/${pick(ownDrafts)}`,
      JSON.stringify({ title: `k6 draft ${__VU}-${__ITER} (edited)` }), params('PATCH /v1/programs/{id}'));
  }
  latency.command.add(res.timings.duration);
  if (!check(res, { 'command 2xx': (r) => r.status === 200 || r.status === 201 })) {
    unexpected.add(1, { class: 'command', status: String(res.status) });
  }
}

// traffic sends one request of the guide's mix.
export function traffic(data) {
  const r = Math.random() * 100;
  const programs = data.programs;
  if (r < 25) {
    get(`${BASE_URL}/v1/programs/${pick(programs)}`, 'discovery', 'GET /v1/programs/{id}');
  } else if (r < 35) {
    if (data.episodes.length > 0) {
      get(`${BASE_URL}/v1/episodes/${pick(data.episodes)}`, 'discovery', 'GET /v1/episodes/{id}');
    } else {
      get(`${BASE_URL}/v1/programs/${pick(programs)}`, 'discovery', 'GET /v1/programs/{id}');
    }
  } else if (r < 50) {
    get(`${BASE_URL}/v1/search?q=${encodeURIComponent(pick(SEARCH_TERMS))}&limit=20`, 'discovery', 'GET /v1/search');
  } else if (r < 55) {
    get(`${BASE_URL}/v1/trending?limit=20`, 'discovery', 'GET /v1/trending');
  } else if (r < 60) {
    get(`${BASE_URL}/v1/popular?limit=20`, 'discovery', 'GET /v1/popular');
  } else if (r < 72) {
    const page = 1 + Math.floor(Math.random() * 3);
    get(`${BASE_URL}/v1/programs?category=${pick(data.categories)}&sort=recent&page=${page}&limit=20`, 'browse', 'GET /v1/programs?category');
  } else if (r < 77) {
    get(`${BASE_URL}/v1/programs?language=${pick(LANGUAGES)}&sort=title&limit=20`, 'browse', 'GET /v1/programs?language');
  } else if (r < 82) {
    get(`${BASE_URL}/v1/programs/${pick(programs)}/episodes?limit=20`, 'browse', 'GET /v1/programs/{id}/episodes');
  } else if (r < 85) {
    get(`${BASE_URL}/v1/categories`, 'browse', 'GET /v1/categories');
  } else if (r < 90) {
    get(`${BASE_URL}/v1/auth/me`, 'auth', 'GET /v1/auth/me', data.authTokens.length > 0 ? pick(data.authTokens) : 'missing');
  } else if (r < 95) {
    command(data);
  } else {
    get(pick(data.media), 'media', 'GET /media/{key}');
  }
}

// login logs one of the set-up's users in (the logins scenario, under the rate limit).
export function login() {
  const i = 1 + Math.floor(Math.random() * USERS);
  const res = http.post(`${BASE_URL}/v1/auth/login`, JSON.stringify({ email: userEmail(i), password: PASSWORD }), {
    headers: { 'Content-Type': 'application/json' },
    tags: { phase: 'load', class: 'login', name: 'POST /v1/auth/login' },
    timeout: '10s',
  });
  latency.login.add(res.timings.duration);
  if (!check(res, { 'login 200': (r) => r.status === 200 })) {
    unexpected.add(1, { class: 'login', status: String(res.status) });
  }
}
