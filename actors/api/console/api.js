// The HTTP API, same origin. Reads are plain GETs; writes carry `Authorization: Bearer <token>` once the operator has
// given a token. The token is asked for only when a write answers 401 (a framewatch without a token never asks), is
// kept in sessionStorage (gone when the tab closes) and the write is retried with it.

const TOKEN_KEY = "framewatch.token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function answer(response) {
  const kind = response.headers.get("Content-Type") || "";
  const body = kind.startsWith("application/json") ? await response.json() : null;
  if (!response.ok) {
    const reason = body && body.error ? body.error : `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, reason);
  }
  return body;
}

export async function get(path) {
  return answer(await fetch(path, { headers: { Accept: "application/json" } }));
}

/** A write (POST, PUT, DELETE); on 401 the token dialog opens, and the call is retried with what was typed. */
export async function write(method, path, body) {
  let refused = false;
  for (;;) {
    const headers = { Accept: "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status !== 401) return answer(response);
    const given = await askToken(refused || Boolean(token));
    if (given === null) throw new ApiError(401, "not sent: this framewatch needs its API token for changes");
    sessionStorage.setItem(TOKEN_KEY, given);
    refused = true;
  }
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** The token dialog (index.html's #token-dialog): resolves to the token typed, or null when cancelled. */
function askToken(wrongBefore) {
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  const note = document.getElementById("token-note");
  note.textContent = wrongBefore ? "The server refused that token. Try again." : "";
  input.value = "";
  dialog.returnValue = ""; // Escape closes without setting it: the last answer must not count again
  return new Promise((resolve) => {
    const enter = (ev) => {
      if (ev.key !== "Enter") return;
      ev.preventDefault(); // the form's implicit submission would press its first button (Cancel)
      dialog.close("ok");
    };
    input.addEventListener("keydown", enter);
    dialog.addEventListener("close", () => {
      input.removeEventListener("keydown", enter);
      const value = input.value.trim();
      resolve(dialog.returnValue === "ok" && value ? value : null);
    }, { once: true });
    dialog.showModal();
    input.focus();
  });
}

export const tasksPath = "/api/v1/frame_extractor/tasks";
export const taskPath = (id) => `${tasksPath}/${encodeURIComponent(id)}`;
export const previewUrl = (id) => `${taskPath(id)}/preview`;
export const alertImageUrl = (id) => `/api/v1/alerts/${encodeURIComponent(id)}/image`;

/** Show the JPEG at ``url`` in ``img`` (fetched as a blob, so a 404 is an answer, not a broken image): resolves to
 *  true once it is decoded, false when there is none (404). The previous object URL is released. */
export async function showImage(img, url) {
  const response = await fetch(url, { cache: "no-store" });
  if (response.status === 404) return false;
  if (!response.ok) await answer(response);
  const src = URL.createObjectURL(await response.blob());
  const old = img.dataset.objectUrl;
  img.dataset.objectUrl = src;
  img.src = src;
  try {
    await img.decode();
  } finally {
    if (old) URL.revokeObjectURL(old);
  }
  return true;
}
