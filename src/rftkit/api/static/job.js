// One job: live charts, events, samples (filter, sort, before/after), checkpoints, controls, try-it chat.
"use strict";

const TERMINAL = ["succeeded", "failed", "cancelled"];

function chartsFor(rows) {
  const keys = rows.length ? Object.keys(Object.assign({}, ...rows)) : [];
  const graders = keys.filter(k => /^(train|valid)_grader_.+_mean$/.test(k));
  return [
    lineChart("Reward", seriesOf(rows, ["train_reward_mean", "valid_reward_mean"], k => k.split("_")[0]), "reward"),
    lineChart("Per grader", seriesOf(rows, graders, k => k.replace(/_mean$/, "").replace("_grader_", " · ")), "graders"),
    lineChart("KL to reference", seriesOf(rows, ["kl"]), "kl"),
    lineChart("Completion length", seriesOf(rows, ["completion_length_mean", "completion_length_max"], k => k.split("_").pop()), "length"),
    lineChart("Step time (s)", seriesOf(rows, ["time_step", "time_gen", "time_update_actor"], k => k.replace("time_", "")), "time"),
    lineChart("Entropy", seriesOf(rows, ["entropy"]), "entropy"),
  ];
}

function evalSummary(summary) {
  const rows = [];
  for (const name of ["baseline", "final"]) {
    const s = summary[name];
    if (s) rows.push(h("tr", {}, h("td", {}, name), h("td", {}, pct(s.pass_at_1)), h("td", {}, `${pct(s.pass_at_k)} (k=${s.k})`),
                               h("td", {}, s.greedy_pass === undefined ? "" : pct(s.greedy_pass)), h("td", {}, s.reward_mean.toFixed(3))));
  }
  if (!rows.length) return h("p", { class: "muted" }, "The baseline check (pass@1, pass@k on the validation set) appears here once it has run.");
  return h("table", { id: "eval-table" }, h("thead", {}, h("tr", {}, ...["", "pass@1", "pass@k", "greedy", "mean reward"].map(t => h("th", {}, t)))),
           h("tbody", {}, ...rows));
}

function pct(x) { return `${(100 * x).toFixed(1)}%`; }

function eventRows(events) {
  return events.map(e => h("tr", { class: e.level }, h("td", { class: "muted" }, new Date(e.created_at * 1000).toLocaleTimeString()),
                           h("td", {}, e.message)));
}

function checkpointRows(job, checkpoints) {
  return checkpoints.map(c => h("tr", {}, h("td", {}, c.step_number), h("td", { class: "mono" }, c.fine_tuned_model_checkpoint),
    h("td", {}, typeof c.metrics.train_reward_mean === "number" ? c.metrics.train_reward_mean.toFixed(3) : ""),
    h("td", {}, typeof c.metrics.valid_reward_mean === "number" ? c.metrics.valid_reward_mean.toFixed(3) : "")));
}

// A multi-turn episode, turn by turn after its prompt: what the model wrote (with its tool
// calls), each tool's result, and why the episode stopped.
function episodeView(row) {
  const turns = row.messages.filter(m => m.role !== "system" && m.role !== "developer");
  const start = turns.findIndex(m => m.role === "assistant");
  const calls = Object.fromEntries((row.tool_calls || []).map(c => [c.id, c]));
  return h("ol", { class: "episode" }, ...turns.slice(start < 0 ? turns.length : start).map(m => {
    const lines = m.content ? [h("pre", {}, m.content)] : [];
    for (const c of m.tool_calls || []) {
      lines.push(h("pre", { class: "tool-call" }, `${c.function.name}(${c.function.arguments})`));
    }
    const failed = m.role === "tool" && calls[m.tool_call_id] && calls[m.tool_call_id].error;
    return h("li", { class: `turn ${m.role}${failed ? " failed" : ""}` }, h("span", { class: "muted" }, m.role), ...lines);
  }), h("li", { class: "turn stop muted" }, `stopped: ${row.stop_reason}`));
}

function sampleCard(row, other) {
  const reward = row.reward;
  const cls = reward >= 1 ? "hi" : reward <= 0 ? "lo" : "";
  const prompt = (row.prompt || []).map(m => `${m.role}: ${m.content}`).join("\n");
  const subs = Object.entries(row.sub_rewards || {}).map(([k, v]) => `${k} ${Number(v).toFixed(2)}`).join(" · ");
  return h("div", { class: "sample", "data-reward": reward },
    h("div", { class: "row" }, h("span", { class: `reward ${cls}` }, `reward ${Number(reward).toFixed(3)}`),
      h("span", { class: "muted" }, `${row.split} step ${row.step} · line ${row.line} · sample ${row.sample} · ${row.stop_reason || row.finish_reason}`),
      subs ? h("span", { class: "muted" }, subs) : null, row.errors && row.errors.length ? h("span", { class: "error-box" }, row.errors.join(", ")) : null),
    h("details", {}, h("summary", { class: "muted" }, "prompt"), h("pre", {}, prompt)),
    row.messages ? episodeView(row) : h("pre", { class: "completion" }, row.completion),
    other ? h("div", { class: "muted" }, `${other.split}: reward ${Number(other.reward).toFixed(3)}`) : null,
    other ? h("pre", { class: "completion before" }, other.completion) : null);
}

function samplesViewer(jobId) {
  const split = h("select", { id: "sample-split" });
  const step = h("select", { id: "sample-step" });
  const filter = h("input", { id: "sample-filter", placeholder: "filter text" });
  const sort = h("select", { id: "sample-sort" }, h("option", { value: "desc" }, "reward ↓"), h("option", { value: "asc" }, "reward ↑"),
                 h("option", { value: "line" }, "prompt line"));
  const compare = h("input", { type: "checkbox", id: "sample-compare" });
  const list = h("div", { id: "samples" });
  const viewer = { split, step, latest: true, rows: [], before: [] };
  const draw = () => {
    const text = filter.value.toLowerCase();
    let rows = viewer.rows.filter(r => !text || (r.completion + JSON.stringify(r.prompt) + JSON.stringify(r.messages || [])).toLowerCase().includes(text));
    const order = { desc: (a, b) => b.reward - a.reward, asc: (a, b) => a.reward - b.reward, line: (a, b) => a.line - b.line || a.sample - b.sample };
    rows = rows.slice().sort(order[sort.value]);
    const before = compare.checked ? viewer.before : [];
    list.replaceChildren(...rows.map(r => sampleCard(r, before.find(b => b.line === r.line && b.sample === r.sample))));
    if (!rows.length) list.replaceChildren(h("p", { class: "muted" }, "No samples yet."));
  };
  viewer.load = async (steps) => {
    const splits = Object.keys(steps);
    if (!splits.length) return draw();
    if (!splits.includes(split.value)) {
      split.replaceChildren(...splits.map(s => h("option", { value: s }, s)));
      split.value = splits.includes("train") ? "train" : splits[0];
    }
    const available = steps[split.value] || [];
    const chosen = viewer.latest ? available[available.length - 1] : Number(step.value);
    step.replaceChildren(...available.slice().reverse().map(s => h("option", { value: s }, `step ${s}`)));
    step.value = String(chosen);
    const key = `${split.value}/${chosen}`;
    if (key !== viewer.key) {
      viewer.key = key;
      viewer.rows = (await api(`/v1/fine_tuning/jobs/${jobId}/samples?split=${split.value}&step=${chosen}`)).data;
      viewer.before = steps.baseline ? (await api(`/v1/fine_tuning/jobs/${jobId}/samples?split=baseline&step=0`)).data : [];
      draw();
    }
  };
  split.addEventListener("change", () => { viewer.latest = true; viewer.key = null; viewer.refresh(); });
  step.addEventListener("change", () => { viewer.latest = step.selectedIndex === 0; viewer.refresh(); });
  for (const el of [filter, sort, compare]) el.addEventListener("input", draw);
  viewer.element = h("div", { class: "card" }, h("h2", {}, "Samples"),
    h("div", { class: "row" }, split, step, filter, sort, h("label", { class: "row" }, compare, "compare with baseline")), list);
  return viewer;
}

function tryIt(job, checkpoints) {
  const models = [job.fine_tuned_model, ...checkpoints.map(c => c.fine_tuned_model_checkpoint), job.model].filter(Boolean);
  const model = h("select", { id: "try-model" }, ...models.map(m => h("option", { value: m }, m)));
  const message = h("input", { id: "try-message", size: 50, placeholder: "a message for the model" });
  const answer = h("pre", { id: "try-answer" });
  const send = async () => {
    answer.textContent = "…";
    try {
      const reply = await api("/v1/chat/completions", { method: "POST", json: { model: model.value, max_tokens: 64,
        messages: [{ role: "user", content: message.value }] } });
      answer.textContent = reply.choices[0].message.content;
    } catch (err) { answer.textContent = `error: ${err.message}`; }
  };
  return h("div", { class: "card" }, h("h2", {}, "Try it"), h("div", { class: "row" }, model, message, h("button", { onclick: send }, "Send")), answer);
}

function controls(job, refresh) {
  const act = action => async () => {
    try { await api(`/v1/fine_tuning/jobs/${job.id}/${action}`, { method: "POST" }); }
    catch (err) { alert(err.message); }
    refresh();
  };
  const s = job.status;
  return [
    h("button", { id: "pause", onclick: act("pause"), disabled: !["running", "queued"].includes(s) }, "Pause"),
    h("button", { id: "resume", onclick: act("resume"), disabled: s !== "paused" }, "Resume"),
    h("button", { id: "cancel", onclick: act("cancel"), disabled: TERMINAL.includes(s) }, "Cancel"),
  ];
}

async function jobPage(jobId) {
  const head = h("div", { class: "row", id: "job-head" });
  const facts = h("div", { class: "card kv", id: "job-facts" });
  const evals = h("div", { class: "card" });
  const charts = h("div", { class: "grid", id: "charts" });
  const events = h("tbody", { id: "events-body" });
  const checkpoints = h("tbody", { id: "checkpoints-body" });
  const viewer = samplesViewer(jobId);
  const tryBox = h("div");
  setView(head, facts, evals, charts,
    h("div", { class: "two" }, h("div", { class: "card events" }, h("h2", {}, "Events"), h("table", {}, events)),
      h("div", { class: "card" }, h("h2", {}, "Checkpoints"), h("table", {}, h("thead", {}, h("tr", {}, ...["step", "model", "train reward", "valid reward"].map(t => h("th", {}, t)))), checkpoints))),
    viewer.element, tryBox);
  let drawnSteps = -1, lastCheckpoints = "";
  const refresh = async () => {
    const [job, metrics, eventList, ckpts, summary, samples] = await Promise.all([
      api(`/v1/fine_tuning/jobs/${jobId}`), api(`/v1/fine_tuning/jobs/${jobId}/metrics`),
      api(`/v1/fine_tuning/jobs/${jobId}/events?limit=200`), api(`/v1/fine_tuning/jobs/${jobId}/checkpoints?limit=100`),
      api(`/v1/fine_tuning/jobs/${jobId}/summary`), api(`/v1/fine_tuning/jobs/${jobId}/samples?limit=1`)]);
    head.replaceChildren(h("h1", {}, job.id), statusBadge(job.status), h("span", { class: "spacer" }), ...controls(job, refresh));
    facts.replaceChildren(...[["model", job.model], ["method", job.method.type], ["progress", `${job.rftkit.steps_done}/${job.rftkit.total_steps ?? "?"} steps`],
      ["fine-tuned model", job.fine_tuned_model || "—"], ["created", when(job.created_at)],
      ["trained tokens", job.trained_tokens ?? "—"], ["estimated finish", when(job.estimated_finish) || "—"],
      ["result file", job.result_files.join(", ") || "—"]].flatMap(([k, v]) => [h("span", { class: "muted" }, k), h("span", { class: "mono" }, v)]),
      ...(job.error ? [h("span", { class: "muted" }, "error"), h("span", { class: "error-box", id: "job-error" }, job.error.message)] : []));
    evals.replaceChildren(h("h2", {}, "Baseline check and final evaluation"), evalSummary(summary));
    if (metrics.data.length !== drawnSteps) {
      drawnSteps = metrics.data.length;
      charts.replaceChildren(...chartsFor(metrics.data));
    }
    events.replaceChildren(...eventRows(eventList.data));
    checkpoints.replaceChildren(...checkpointRows(job, ckpts.data));
    const ckptKey = ckpts.data.map(c => c.id).join() + job.fine_tuned_model;
    if (ckptKey !== lastCheckpoints) { lastCheckpoints = ckptKey; tryBox.replaceChildren(tryIt(job, ckpts.data)); }
    await viewer.load(samples.steps || {});
  };
  viewer.refresh = refresh;
  every(1500, refresh);
}
