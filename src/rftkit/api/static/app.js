// The dashboard's core: the API key, calls to /v1, the router and the jobs list.
"use strict";

const state = { timer: null };

function apiKey() { return localStorage.getItem("rftkit-key") || ""; }

function takeKeyFromUrl() {
  const match = location.hash.match(/key=([^&]+)/);
  if (match) {
    localStorage.setItem("rftkit-key", decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + "#/");
  }
}

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: `Bearer ${apiKey()}` }, options.headers || {});
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(options.json);
  }
  const reply = await fetch(path, Object.assign({}, options, { headers }));
  const body = await reply.json().catch(() => ({}));
  if (reply.status === 401) { showLogin("That key was not accepted."); throw new Error("unauthorized"); }
  if (!reply.ok) throw new Error((body.error && body.error.message) || `HTTP ${reply.status}`);
  return body;
}

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else if (v !== false && v !== null && v !== undefined) el.setAttribute(k, v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.appendChild(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
  }
  return el;
}

function statusBadge(status) { return h("span", { class: `status ${status}`, "data-status": status }, status); }

function when(seconds) { return seconds ? new Date(seconds * 1000).toLocaleString() : ""; }

function setView(...children) {
  const view = document.getElementById("view");
  view.replaceChildren(...children);
  return view;
}

function every(ms, fn) {
  clearInterval(state.timer);
  const run = () => fn().catch(err => { if (err.message !== "unauthorized") console.warn(err); });
  run();
  state.timer = setInterval(run, ms);
}

function showLogin(message) {
  clearInterval(state.timer);
  const input = h("input", { id: "key-input", type: "password", size: 60, placeholder: "rftk_…" });
  const save = () => { localStorage.setItem("rftkit-key", input.value.trim()); route(); };
  setView(h("div", { class: "card" },
    h("h1", {}, "API key"),
    h("p", { class: "muted" }, message || "Enter a key from `rftkit keys create` (kept in this browser only)."),
    h("div", { class: "row" }, input, h("button", { class: "primary", id: "key-save", onclick: save }, "Use key"))));
}

function compareBox(jobId, picked, onChange) {
  const box = h("input", { type: "checkbox", class: "pick", "data-pick": jobId, title: "pick to compare", checked: picked.has(jobId),
                           onclick: event => event.stopPropagation() });
  box.addEventListener("change", () => { if (box.checked) picked.add(jobId); else picked.delete(jobId); onChange(); });
  return box;
}

async function jobsPage() {
  const table = h("tbody", { id: "jobs-body" });
  const picked = new Set();
  const compare = h("button", { id: "compare", disabled: true,
                                onclick: () => { location.hash = `#/compare?ids=${[...picked].join(",")}`; } }, "Compare");
  const sync = () => { compare.disabled = picked.size < 2; compare.textContent = picked.size ? `Compare ${picked.size}` : "Compare"; };
  setView(h("div", { class: "row" }, h("h1", {}, "Fine-tuning jobs"), h("span", { class: "spacer" }), compare,
                h("a", { href: "#/new" }, h("button", { class: "primary" }, "New job"))),
          h("div", { class: "card" }, h("table", {},
            h("thead", {}, h("tr", {}, ...["", "job", "status", "model", "progress", "created", "fine-tuned model"].map(t => h("th", {}, t)))),
            table)));
  every(2000, async () => {
    const jobs = (await api("/v1/fine_tuning/jobs?limit=100")).data;
    table.replaceChildren(...jobs.map(job => h("tr", { class: "click", "data-job": job.id, onclick: () => { location.hash = `#/jobs/${job.id}`; } },
      h("td", {}, compareBox(job.id, picked, sync)),
      h("td", { class: "mono" }, job.id), h("td", {}, statusBadge(job.status)), h("td", {}, job.model),
      h("td", {}, `${job.rftkit.steps_done}/${job.rftkit.total_steps ?? "?"}`), h("td", {}, when(job.created_at)),
      h("td", { class: "mono" }, job.fine_tuned_model || ""))));
    if (jobs.length === 0) table.replaceChildren(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No jobs yet.")));
  });
}

function route() {
  clearInterval(state.timer);
  takeKeyFromUrl();
  document.getElementById("logout").hidden = !apiKey();
  if (!apiKey()) return showLogin();
  const [path, query] = (location.hash || "#/").split("?");
  const [, page, ...rest] = path.split("/");
  const id = decodeURIComponent(rest.join("/"));
  if (page === "jobs" && id) return jobPage(id);
  if (page === "feedback") return id ? reviewPage(id) : feedbackPage();
  if (page === "compare") return comparePage((new URLSearchParams(query).get("ids") || "").split(",").filter(Boolean));
  if (page === "new") return newJobPage();
  return jobsPage();
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", () => {
  document.getElementById("logout").addEventListener("click", () => { localStorage.removeItem("rftkit-key"); route(); });
  route();
});
