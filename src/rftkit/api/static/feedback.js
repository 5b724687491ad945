// Reviewers: a queue of comparison items, one item judged at a time (pick, rate, flag, comment),
// items added from a job's samples or an uploaded file, AI pre-labels, agreement and export.
"use strict";

const LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";

function itemHash(id) { return `#/feedback/${encodeURIComponent(id)}`; }

function promptText(prompt) { return (prompt || []).map(m => `${m.role}: ${m.content}`).join("\n"); }

function preview(prompt) {
  const text = (prompt || []).filter(m => m.role === "user").map(m => m.content).join(" ");
  return text.length > 90 ? text.slice(0, 89) + "…" : text;
}

function reviewerName(fallback) { return localStorage.getItem("rftkit-reviewer") || fallback; }

function message(el, text, ok) { el.className = ok ? "ok-box" : "error-box"; el.textContent = text; }

async function guarded(el, action) {
  try { await action(); } catch (err) { if (err.message !== "unauthorized") message(el, err.message, false); }
}

// ------------------------------------------------------------------------- the queue page

async function feedbackPage() {
  const criteria = await api("/v1/feedback/criteria");
  const reviewer = h("input", { id: "reviewer", value: reviewerName(criteria.reviewer), size: 18 });
  const queue = h("tbody", { id: "queue-body" });
  const refresh = () => loadQueue(queue, reviewer.value.trim() || criteria.reviewer);
  reviewer.addEventListener("change", () => { localStorage.setItem("rftkit-reviewer", reviewer.value.trim()); refresh(); });
  setView(
    h("div", { class: "row" }, h("h1", {}, "Feedback"), h("span", { class: "spacer" }),
      h("label", { for: "reviewer", class: "inline" }, "reviewing as"), reviewer,
      h("button", { id: "export", onclick: () => downloadExport() }, "Export JSONL")),
    h("div", { class: "card" }, h("h2", {}, "To review"),
      h("table", {}, h("thead", {}, h("tr", {}, ...["item", "prompt", "answers", "source"].map(t => h("th", {}, t)))), queue)),
    h("div", { class: "two" }, addItemsCard(refresh), prelabelCard(criteria.data, refresh)),
    h("div", { class: "card" }, h("h2", {}, "Agreement"), h("div", { id: "agreement" }, "…")));
  await Promise.all([refresh(), loadAgreement(document.getElementById("agreement"))]);
}

async function loadQueue(queue, reviewer) {
  const items = (await api(`/v1/feedback/items?limit=100&pending_for=${encodeURIComponent(reviewer)}`)).data;
  queue.replaceChildren(...items.map(item => h("tr", { class: "click", "data-item": item.id, onclick: () => { location.hash = itemHash(item.id); } },
    h("td", { class: "mono" }, item.id), h("td", {}, preview(item.prompt)), h("td", {}, item.answers.length),
    h("td", { class: "muted" }, item.source))));
  if (!items.length) queue.replaceChildren(h("tr", {}, h("td", { colspan: 4, class: "muted" }, `Nothing left for ${reviewer} to review.`)));
}

function addItemsCard(refresh) {
  const jobs = h("select", { id: "samples-job" });
  const file = h("input", { type: "file", id: "items-file", accept: ".jsonl" });
  const result = h("div", { id: "add-result", class: "muted" });
  const added = reply => message(result, `added ${reply.added.length} item(s)` +
    (reply.skipped.length ? `; ${reply.skipped.length} already there` : ""), true);
  const fromSamples = () => guarded(result, async () => {
    added(await api("/v1/feedback/items/from_samples", { method: "POST", json: { job: jobs.value } }));
    await refresh();
  });
  file.addEventListener("change", () => guarded(result, async () => {
    const form = new FormData();
    form.append("file", file.files[0]);
    added(await api("/v1/feedback/items", { method: "POST", body: form }));
    await refresh();
  }));
  api("/v1/fine_tuning/jobs?limit=100").then(reply => jobs.replaceChildren(
    ...reply.data.map(job => h("option", { value: job.id }, `${job.id} (${job.status})`)),
    ...(reply.data.length ? [] : [h("option", { value: "", disabled: true, selected: true }, "(no jobs yet)")]))).catch(() => {});
  return h("div", { class: "card" }, h("h2", {}, "Add items"),
    h("label", { for: "samples-job" }, "from a job's samples (one item per prompt, its distinct answers)"),
    h("div", { class: "row" }, jobs, h("button", { id: "from-samples", onclick: fromSamples }, "Add from samples")),
    h("label", { for: "items-file" }, 'or upload a JSONL file: {"prompt", "answers"} per line'), file, result);
}

function prelabelCard(criteria, refresh) {
  const grader = h("textarea", { id: "judge-grader", rows: 6 });
  grader.value = JSON.stringify({ type: "score_model", name: "judge", model: "judge", range: [0, 10],
    input: [{ role: "user", content: "Rate this answer from 0 to 10: {{ sample.output_text }}" }] }, null, 2);
  const criterion = h("select", { id: "judge-criterion" }, h("option", { value: "" }, "(no rating)"),
    ...criteria.map(c => h("option", { value: c.name }, c.name)));
  const unsafeBelow = h("input", { id: "judge-unsafe-below", type: "number", step: "0.05", min: 0, max: 1, placeholder: "off" });
  const result = h("div", { id: "prelabel-result", class: "muted" });
  const run = () => guarded(result, async () => {
    message(result, "the judge is labelling…", true);
    const body = { grader: JSON.parse(grader.value), criterion: criterion.value || null,
                   unsafe_below: unsafeBelow.value === "" ? null : Number(unsafeBelow.value) };
    const reply = await api("/v1/feedback/prelabel", { method: "POST", json: body });
    const skipped = Object.entries(reply.skipped).map(([id, why]) => `${id}: ${why}`).join("\n");
    message(result, `${reply.judgement_ids.length} item(s) pre-labelled` + (skipped ? `; skipped:\n${skipped}` : ""), true);
    await refresh();
  });
  return h("div", { class: "card" }, h("h2", {}, "AI pre-labels"),
    h("p", { class: "muted" }, "A score_model or label_model judge labels items first; reviewers confirm or correct."),
    grader, h("div", { class: "row" }, h("label", { for: "judge-criterion", class: "inline" }, "rates"), criterion,
      h("label", { for: "judge-unsafe-below", class: "inline" }, "unsafe below"), unsafeBelow,
      h("button", { id: "prelabel", onclick: run }, "Pre-label")), result);
}

function fmt(x) { return x === null || x === undefined ? "–" : typeof x === "number" && !Number.isInteger(x) ? x.toFixed(3) : String(x); }

function agreementRows(between, part) {
  const rows = [["preferred", part.pairs, part.preference_agreement, part.preference_kappa, null],
                ["unsafe", "", part.unsafe_agreement, part.unsafe_kappa, null],
                ...Object.entries(part.ratings).map(([c, r]) => [c, r.pairs, r.exact, r.kappa, r.mean_abs_diff])];
  return rows.map(([field, ...values]) => h("tr", { "data-between": between, "data-field": field },
    h("td", {}, between), h("td", {}, field), ...values.map(v => h("td", {}, fmt(v)))));
}

async function loadAgreement(box) {
  const report = await api("/v1/feedback/agreement");
  const counts = Object.entries(report.reviewer_counts).map(([name, n]) => `${name} ${n}`).join(", ") || "none yet";
  const judge = report.judge_vs_human;
  box.replaceChildren(
    h("table", {}, h("thead", {}, h("tr", {}, ...["between", "field", "pairs", "agreement", "Cohen's κ", "mean |Δ|"].map(t => h("th", {}, t)))),
      h("tbody", {}, ...agreementRows("reviewers", report.reviewers), ...agreementRows("judge vs human", judge))),
    h("p", { class: "muted" }, `Judgements per reviewer: ${counts}. Pre-labels confirmed unchanged: ${judge.confirmed_unchanged}, corrected: ${judge.corrected}.`));
}

async function downloadExport() {
  const reply = await fetch("/v1/feedback/export", { headers: { Authorization: `Bearer ${apiKey()}` } });
  const link = h("a", { href: URL.createObjectURL(await reply.blob()), download: "feedback.jsonl" });
  document.body.appendChild(link);
  link.click();
  link.remove();
}

// ------------------------------------------------------------------------- one item

async function reviewPage(itemId) {
  const [item, criteria] = await Promise.all([api(`/v1/feedback/items/${encodeURIComponent(itemId)}`), api("/v1/feedback/criteria")]);
  const reviewer = reviewerName(criteria.reviewer);
  const names = criteria.data.map(c => c.name);
  const label = latestPrelabel(item.judgements, reviewer);
  const result = h("div", { id: "judge-result" });
  const comment = h("textarea", { id: "comment", rows: 3, placeholder: "why (optional)" });
  const submit = () => guarded(result, async () => {
    await api(...judgementRequest(item, label, readForm(item, names, reviewer, comment.value)));
    await nextItem(reviewer);
  });
  setView(...[
    h("div", { class: "row" }, h("a", { href: "#/feedback" }, "← queue"), h("h1", {}, `Item ${item.id}`),
      h("span", { class: "spacer" }), h("span", { class: "muted" }, `reviewing as ${reviewer}`)),
    h("div", { class: "card" }, h("h2", {}, "Prompt"), h("pre", { id: "prompt", class: "prompt" }, promptText(item.prompt))),
    label ? prelabelNote(label) : null,
    h("div", { class: "answers", id: "answers" }, ...item.answers.map((answer, i) => answerCard(answer, i, criteria.data))),
    h("div", { class: "card" }, preferenceRow(item.answers.length), comment,
      h("div", { class: "row" }, h("button", { class: "primary", id: "submit", onclick: submit }, label ? "Confirm / submit correction" : "Submit"),
        h("button", { id: "skip", onclick: () => nextItem(reviewer, item.id) }, "Skip"), result)),
    judgementsCard(item.judgements)].filter(Boolean));
  if (label) fillForm(label, comment);
}

function latestPrelabel(judgements, reviewer) {
  const confirmed = new Set(judgements.filter(j => j.reviewer === reviewer && j.based_on).map(j => j.based_on));
  return judgements.filter(j => j.status === "prelabel" && !confirmed.has(j.id)).pop() || null;
}

function answerCard(answer, index, criteria) {
  const ratingRow = c => h("div", { class: "rating", "data-criterion": c.name },
    h("span", { class: "criterion", title: c.description || "" }, c.name),
    ...[1, 2, 3, 4, 5].map(v => h("label", { class: "choice" },
      h("input", { type: "radio", name: `rate-${index}-${c.name}`, value: v }), String(v))));
  return h("div", { class: "card answer", "data-answer": index },
    h("h2", {}, `Answer ${LETTERS[index]}`), h("pre", { class: "completion" }, answer.text),
    answer.sample_ref ? h("div", { class: "muted mono" }, answer.sample_ref) : null,
    ...criteria.map(ratingRow),
    h("label", { class: "choice unsafe" }, h("input", { type: "checkbox", id: `unsafe-${index}` }), "unsafe"));
}

function preferenceRow(count) {
  const option = (value, text) => h("label", { class: "choice" },
    h("input", { type: "radio", name: "preferred", id: `pick-${value}`, value }), text);
  return h("div", { class: "row preference" }, h("strong", {}, "Better answer:"),
    ...Array.from({ length: count }, (_, i) => option(String(i), LETTERS[i])), option("none", "no preference"));
}

function prelabelNote(label) {
  const picked = label.preferred === null ? "no preference" : `answer ${LETTERS[label.preferred]} is better`;
  const flagged = label.unsafe.map((u, i) => u ? LETTERS[i] : null).filter(Boolean);
  return h("div", { class: "card prelabel", id: "prelabel-note" },
    h("strong", {}, `AI pre-label by ${label.reviewer}: `), picked,
    flagged.length ? `; unsafe: ${flagged.join(", ")}` : "",
    h("div", { class: "muted" }, "The form is filled in with it: submit to confirm, or change what you disagree with first."));
}

function fillForm(label, comment) {
  const pick = document.getElementById(`pick-${label.preferred === null ? "none" : label.preferred}`);
  if (pick) pick.checked = true;
  label.ratings.forEach((ratings, i) => Object.entries(ratings).forEach(([c, v]) => {
    const input = document.querySelector(`input[name="rate-${i}-${c}"][value="${v}"]`);
    if (input) input.checked = true;
  }));
  label.unsafe.forEach((flag, i) => { document.getElementById(`unsafe-${i}`).checked = flag; });
  comment.value = label.comment || "";
}

function readForm(item, names, reviewer, comment) {
  const pick = document.querySelector('input[name="preferred"]:checked');
  if (!pick) throw new Error("Pick the better answer, or 'no preference'.");
  const ratings = item.answers.map((_, i) => Object.fromEntries(names
    .map(c => [c, document.querySelector(`input[name="rate-${i}-${c}"]:checked`)])
    .filter(([, input]) => input).map(([c, input]) => [c, Number(input.value)])));
  return { reviewer, comment, preferred: pick.value === "none" ? null : Number(pick.value),
           ratings: ratings.some(r => Object.keys(r).length) ? ratings : [],
           unsafe: item.answers.map((_, i) => document.getElementById(`unsafe-${i}`).checked) };
}

function judgementRequest(item, label, body) {
  const path = label ? `/v1/feedback/judgements/${label.id}/confirm` : `/v1/feedback/items/${encodeURIComponent(item.id)}/judgements`;
  return [path, { method: "POST", json: body }];
}

async function nextItem(reviewer, after) {
  const query = `pending_for=${encodeURIComponent(reviewer)}&limit=1` + (after ? `&after=${encodeURIComponent(after)}` : "");
  const [next] = (await api(`/v1/feedback/items?${query}`)).data;
  location.hash = next ? itemHash(next.id) : "#/feedback";
}

function judgementsCard(judgements) {
  if (!judgements.length) return null;
  const verdict = j => j.preferred === null ? "no preference" : LETTERS[j.preferred];
  return h("div", { class: "card" }, h("h2", {}, "Judgements so far"), h("table", { id: "judgements" },
    h("thead", {}, h("tr", {}, ...["reviewer", "status", "better", "unsafe", "comment", "when"].map(t => h("th", {}, t)))),
    h("tbody", {}, ...judgements.map(j => h("tr", {}, h("td", {}, j.reviewer), h("td", {}, j.status), h("td", {}, verdict(j)),
      h("td", {}, j.unsafe.map((u, i) => u ? LETTERS[i] : null).filter(Boolean).join(", ")), h("td", {}, j.comment),
      h("td", { class: "muted" }, j.created_at))))));
}
