// The REST client of both pages. The key goes in the Authorization header and
// nowhere else: never in a URL (which lands in logs and history).

export const API_BASE = "/v1/chat";

export class ApiError extends Error {
  constructor(status, data) {
    super(errorText(data) || `HTTP ${status}`);
    this.status = status;
    this.data = data;
  }
}

// A DRF error body as one line: {"detail": ...} or {"field": ["..."]}.
export function errorText(data) {
  if (!data || typeof data !== "object") return "";
  if (typeof data.detail === "string") return data.detail;
  return Object.entries(data)
    .map(([field, problems]) => `${field}: ${[].concat(problems).join(" ")}`)
    .join("; ");
}

export class Api {
  constructor(key) {
    this.key = key;
  }

  async request(method, path, body) {
    const headers = { Authorization: `Token ${this.key}`, Accept: "application/json" };
    const init = { method, headers, cache: "no-store", credentials: "omit" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(API_BASE + path, init);
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null; // an empty or non-JSON body (a proxy's error page)
    }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  get(path) {
    return this.request("GET", path);
  }

  post(path, body) {
    return this.request("POST", path, body);
  }

  // Every page of a list endpoint ({results, next}); `next` is a full URL.
  async listAll(path, maxPages = 20) {
    const results = [];
    let next = path;
    for (let page = 0; next && page < maxPages; page += 1) {
      const data = await this.get(next);
      results.push(...data.results);
      next = data.next ? relativeToBase(data.next) : null;
    }
    return results;
  }
}

function relativeToBase(url) {
  const { pathname, search } = new URL(url, window.location.href);
  return pathname.slice(pathname.indexOf(API_BASE) + API_BASE.length) + search;
}

// Try `key` on `path` before signing in with it: "" when it works (or answers one
// of the `fine` statuses), else what to tell the person at the keyboard.
export async function keyProblem(key, path, kind, fine = []) {
  try {
    await new Api(key).get(path);
    return "";
  } catch (exc) {
    if (exc instanceof ApiError && fine.includes(exc.status)) return "";
    if (exc.status === 403) return `That is not ${kind} key.`;
    return exc instanceof ApiError ? exc.message : "The server cannot be reached.";
  }
}
