// The REST client. The key lives in sessionStorage only (gone when the tab closes) and
// travels in the Authorization header, never in a URL.

const KEY = "qcpulse.key";

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
  }
}

export const auth = {
  get key() {
    return sessionStorage.getItem(KEY);
  },
  set(key) {
    sessionStorage.setItem(KEY, key);
  },
  clear() {
    sessionStorage.removeItem(KEY);
  },
};

let onUnauthorized = () => {};
export function whenUnauthorized(fn) {
  onUnauthorized = fn;
}

function url(path, params) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== null && v !== undefined && v !== "") query.set(k, v);
  }
  const qs = query.toString();
  return qs ? `${path}?${qs}` : path;
}

async function request(method, path, { params, body, key } = {}) {
  const headers = { Authorization: `Bearer ${key || auth.key}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url(path, params), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  if (!response.ok) {
    let detail = "";
    try {
      const problem = await response.json();
      detail = problem.detail || problem.title || "";
      if (!detail && problem.issue) detail = problem.issue.map((i) => i.diagnostics).join("; ");
    } catch {
      detail = response.statusText;
    }
    if (response.status === 401 && !key) onUnauthorized();
    throw new ApiError(response.status, detail);
  }
  return response.status === 204 ? null : response.json();
}

export const api = {
  get: (path, params, key) => request("GET", path, { params, key }),
  post: (path, body) => request("POST", path, { body }),
  put: (path, body) => request("PUT", path, { body }),
};

// Runs fn over items with at most `limit` requests in flight (the overview asks for one
// series per indicator; a small hospital server should not get 90 at once).
export async function pool(items, limit, fn) {
  const results = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const i = next++;
      try {
        results[i] = await fn(items[i], i);
      } catch (error) {
        results[i] = { error };
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
