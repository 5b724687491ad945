// A new job: upload data, pick or edit a grader, test it on a sample, launch.
"use strict";

const GRADER_PRESETS = {
  "string_check (exact answer)": { type: "string_check", name: "exact", input: "{{ sample.output_text }}", reference: "{{ item.answer }}", operation: "eq" },
  "string_check (contains)": { type: "string_check", name: "contains", input: "{{ sample.output_text }}", reference: "{{ item.answer }}", operation: "ilike" },
  "text_similarity (fuzzy)": { type: "text_similarity", name: "similar", input: "{{ sample.output_text }}", reference: "{{ item.answer }}", evaluation_metric: "fuzzy_match" },
  "python (sandboxed)": { type: "python", name: "python", source: "def grade(sample, item):\n    return float(item.get('answer', '') in sample['output_text'])\n" },
};

function fileField(id, label, onUploaded) {
  const input = h("input", { type: "file", id, accept: ".jsonl,.json,.parquet" });
  const result = h("div", { id: `${id}-result`, class: "muted" });
  input.addEventListener("change", async () => {
    if (!input.files.length) return;
    const form = new FormData();
    form.append("purpose", "fine-tune");
    form.append("file", input.files[0]);
    result.className = "muted";
    result.textContent = "uploading and checking…";
    try {
      const file = await api("/v1/files", { method: "POST", body: form });
      result.className = "ok-box";
      result.textContent = `${file.id}: ${file.rftkit.rows} ${file.rftkit.kind} rows`;
      input.dataset.fileId = file.id;
      onUploaded(file);
    } catch (err) {
      delete input.dataset.fileId;
      result.className = "error-box";
      result.textContent = err.message;
    }
  });
  return [h("label", { for: id }, label), input, result];
}

function parseJson(text, what) {
  try { return JSON.parse(text); } catch (err) { throw new Error(`${what}: ${err.message}`); }
}

async function firstRow(fileId) {
  const reply = await fetch(`/v1/files/${fileId}/content`, { headers: { Authorization: `Bearer ${apiKey()}` } });
  const line = (await reply.text()).split("\n").find(l => l.trim());
  return line ? JSON.parse(line) : {};
}

function graderSection() {
  const preset = h("select", { id: "grader-preset" }, ...Object.keys(GRADER_PRESETS).map(k => h("option", { value: k }, k)));
  const grader = h("textarea", { id: "grader", rows: 7 });
  const sample = h("textarea", { id: "grader-sample", rows: 2, placeholder: "a model answer to grade" });
  const item = h("textarea", { id: "grader-item", rows: 3 });
  const result = h("div", { id: "grader-result" });
  const usePreset = () => { grader.value = JSON.stringify(GRADER_PRESETS[preset.value], null, 2); };
  preset.addEventListener("change", usePreset);
  usePreset();
  item.value = "{}";
  const test = async () => {
    result.className = "muted";
    result.textContent = "testing…";
    try {
      const spec = parseJson(grader.value, "grader");
      await api("/v1/fine_tuning/alpha/graders/validate", { method: "POST", json: { grader: spec } });
      const ran = await api("/v1/fine_tuning/alpha/graders/run", { method: "POST",
        json: { grader: spec, model_sample: sample.value, item: parseJson(item.value, "item") } });
      const errors = Object.entries(ran.metadata.errors).filter(([k, v]) => v === true).map(([k]) => k);
      result.className = errors.length ? "error-box" : "ok-box";
      result.textContent = `reward ${ran.reward}` + (errors.length ? ` — errors: ${errors.join(", ")}` : " — the grader works on this sample");
    } catch (err) {
      result.className = "error-box";
      result.textContent = err.message;
    }
  };
  const element = h("div", { class: "card" }, h("h2", {}, "Grader"), h("label", {}, "start from"), preset, h("label", { for: "grader" }, "grader (JSON)"), grader,
    h("h2", { style: "margin-top:12px" }, "Test the grader on a sample"),
    h("div", { class: "two" }, h("div", {}, h("label", {}, "sample (the model's answer)"), sample),
                               h("div", {}, h("label", {}, "item (a dataset row; the first training row once uploaded)"), item)),
    h("div", { class: "row", style: "margin-top:8px" }, h("button", { id: "grader-test", onclick: test }, "Test grader"), result));
  return { element, grader, item };
}

async function newJobPage() {
  const graders = graderSection();
  const train = fileField("train-file", "training file (JSONL: messages, plus fields graders read)", async file => {
    graders.item.value = JSON.stringify(await firstRow(file.id), null, 2);
  });
  const valid = fileField("valid-file", "validation file (optional: baseline check and evaluation)", () => {});
  const model = h("select", { id: "model" });
  const method = h("select", { id: "method" }, h("option", { value: "reinforcement" }, "reinforcement"), h("option", { value: "supervised" }, "supervised"));
  const batch = h("input", { id: "batch-size", value: "auto", size: 6 });
  const epochs = h("input", { id: "n-epochs", value: "auto", size: 6 });
  const suffix = h("input", { id: "suffix", size: 16 });
  const seed = h("input", { id: "seed", value: "42", size: 6 });
  const extra = h("textarea", { id: "rftkit-block", rows: 4 }, JSON.stringify({ group_size: 4, max_steps: 20 }, null, 2));
  const error = h("div", { id: "launch-error", class: "error-box" });
  const number = v => (v.trim() === "auto" ? "auto" : Number(v));
  const launch = async () => {
    error.textContent = "";
    try {
      const training = document.getElementById("train-file").dataset.fileId;
      if (!training) throw new Error("upload a training file first");
      const type = method.value;
      const hyperparameters = { batch_size: number(batch.value), n_epochs: number(epochs.value) };
      const body = { model: model.value, training_file: training, suffix: suffix.value || null, seed: Number(seed.value),
        method: type === "reinforcement" ? { type, reinforcement: { grader: parseJson(graders.grader.value, "grader"), hyperparameters } }
                                         : { type, supervised: { hyperparameters } },
        rftkit: parseJson(extra.value || "{}", "rftkit block") };
      const validation = document.getElementById("valid-file").dataset.fileId;
      if (validation) body.validation_file = validation;
      const job = await api("/v1/fine_tuning/jobs", { method: "POST", json: body });
      location.hash = `#/jobs/${job.id}`;
    } catch (err) { error.textContent = err.message; }
  };
  setView(h("h1", {}, "New fine-tuning job"),
    h("div", { class: "two" },
      h("div", { class: "card" }, h("h2", {}, "Data and model"), ...train, ...valid, h("label", { for: "model" }, "base model"), model,
        h("label", { for: "method" }, "method"), method, h("div", { class: "row" },
          h("div", {}, h("label", {}, "batch size"), batch), h("div", {}, h("label", {}, "epochs"), epochs), h("div", {}, h("label", {}, "suffix"), suffix),
          h("div", {}, h("label", {}, "seed"), seed)),
        h("label", { for: "rftkit-block" }, "rftkit options (JSON: algorithm, group_size, max_steps, lora, kl, …)"), extra),
      graders.element),
    h("div", { class: "row" }, h("button", { class: "primary", id: "launch", onclick: launch }, "Launch job"), error));
  const models = (await api("/v1/models")).data;
  model.replaceChildren(...models.map(m => h("option", { value: m.id }, m.id)));
}
