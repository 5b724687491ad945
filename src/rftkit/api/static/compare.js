// Compare jobs (#/compare?ids=a,b): their curves overlaid, one color per job, and their settings side by side.
"use strict";

const COMPARED_CURVES = [
  ["Train reward", "train_reward_mean", "train_reward"],
  ["Valid reward", "valid_reward_mean", "valid_reward"],
  ["KL to reference", "kl", "kl"],
  ["Completion length (mean)", "completion_length_mean", "length"],
  ["Step time (s)", "time_step", "time"],
];

function jobLabel(job) { return job.suffix ? `${job.suffix} …${job.id.slice(-6)}` : `…${job.id.slice(-8)}`; }

function validRewards(rows) {
  return rows.filter(r => typeof r.valid_reward_mean === "number").map(r => [r.step, r.valid_reward_mean]);
}

// The rows of the settings table: [label, value per job, whether to mark differing values]
function comparedRows(jobs, metrics) {
  const settings = jobs.map(j => j.rftkit.settings || {});
  const keys = [...new Set(settings.flatMap(s => Object.keys(s)))];
  const valid = metrics.map(validRewards);
  const best = valid.map(points => points.reduce((a, p) => (a && a[1] >= p[1] ? a : p), null));
  return [
    ["model", jobs.map(j => j.model), true],
    ...keys.map(k => [k.replace(/_/g, " "), settings.map(s => s[k]), true]),
    ["status", jobs.map(j => j.status), false],
    ["steps", jobs.map(j => `${j.rftkit.steps_done}/${j.rftkit.total_steps ?? "?"}`), false],
    ["final valid reward", valid.map(points => (points.length ? points[points.length - 1][1] : null)), false],
    ["best valid reward", best.map(p => (p ? p[1] : null)), false],
    ["best valid step", best.map(p => (p ? p[0] : null)), false],
  ];
}

function shown(value) {
  if (value === null || value === undefined) return "—";
  return typeof value === "number" ? niceNumber(value) : String(value);
}

function settingsTable(jobs, metrics) {
  const head = h("tr", {}, h("th", {}, ""), ...jobs.map((j, i) => h("th", { "data-key": j.id },
    h("span", { style: `color:${PALETTE[i % PALETTE.length]}` }, "■ "), h("a", { href: `#/jobs/${j.id}` }, jobLabel(j)))));
  const rows = comparedRows(jobs, metrics).map(([label, values, marked]) => {
    const differs = marked && new Set(values.map(shown)).size > 1;
    return h("tr", { class: differs ? "differs" : null, "data-setting": label },
      h("th", {}, label), ...values.map(v => h("td", { class: "mono" }, shown(v))));
  });
  return h("table", { id: "compare-settings" }, h("thead", {}, head), h("tbody", {}, ...rows));
}

function compareCharts(jobs, metrics) {
  return COMPARED_CURVES.map(([title, metric, key]) => lineChart(title, jobs.map((job, i) => ({
    name: jobLabel(job), key: job.id, color: PALETTE[i % PALETTE.length],
    points: metrics[i].filter(r => typeof r[metric] === "number").map(r => [r.step, r[metric]]),
  })), key));
}

function jobsLegend(jobs) {
  return jobs.map((job, i) => h("div", { class: "row", "data-key": job.id },
    h("span", { style: `color:${PALETTE[i % PALETTE.length]}` }, "■"), h("a", { class: "mono", href: `#/jobs/${job.id}` }, job.id),
    statusBadge(job.status), h("span", { class: "muted" }, `${job.model} · ${jobLabel(job)}`)));
}

async function comparePage(ids) {
  const back = h("a", { href: "#/" }, "back to the jobs");
  if (ids.length < 2) {
    return setView(h("h1", {}, "Compare jobs"), h("p", { class: "muted" }, "Tick two or more jobs on the jobs list to compare them. ", back));
  }
  const legend = h("div", { class: "card", id: "compare-legend" });
  const table = h("div", { class: "card", id: "compare-table" });
  const charts = h("div", { class: "grid", id: "compare-charts" });
  const error = h("div", { class: "error-box", id: "compare-error" });
  setView(h("div", { class: "row" }, h("h1", {}, `Compare ${ids.length} jobs`), h("span", { class: "spacer" }), back), error, legend, table, charts);
  let drawn = "";
  every(3000, async () => {
    let jobs, metrics;
    try {
      jobs = await Promise.all(ids.map(id => api(`/v1/fine_tuning/jobs/${id}`)));
      metrics = (await Promise.all(ids.map(id => api(`/v1/fine_tuning/jobs/${id}/metrics`)))).map(m => m.data);
    } catch (err) { error.textContent = err.message; throw err; }
    error.textContent = "";
    const key = jobs.map((j, i) => `${j.status}:${metrics[i].length}`).join();
    if (key === drawn) return;
    drawn = key;
    legend.replaceChildren(h("h2", {}, "Jobs"), ...jobsLegend(jobs));
    table.replaceChildren(h("h2", {}, "Settings and results"), settingsTable(jobs, metrics));
    charts.replaceChildren(...compareCharts(jobs, metrics));
  });
}
