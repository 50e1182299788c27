"use strict";
// Posts the password as JSON with the double-submit CSRF token (cookie echoed in a header).
function cookie(name) {
  const hit = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
  return hit ? decodeURIComponent(hit.slice(name.length + 1)) : "";
}

document.getElementById("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const error = document.getElementById("login-error");
  error.textContent = "";
  const password = document.getElementById("password").value;
  try {
    const r = await fetch("/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": cookie("edgecam_csrf") },
      body: JSON.stringify({ password }),
      credentials: "same-origin",
    });
    if (r.ok) { location.replace("/"); return; }
    const doc = await r.json().catch(() => ({}));
    error.textContent = doc.error || `login failed (${r.status})`;
  } catch (e) {
    error.textContent = "edgecam is not reachable";
  }
});
