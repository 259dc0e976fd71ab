// latent-spectra web interface: live job tables and plotly charts. No inline scripts (the
// page's Content-Security-Policy allows scripts from this server only); data arrives as
// <script type="application/json"> blocks or from the interface's own .json endpoints.
"use strict";

const REFRESH_MS = 2000;

function text(tag, value, attrs) {
  const node = document.createElement(tag);
  if (value !== undefined && value !== null) node.textContent = String(value);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

function fmtNumber(value, digits) {
  if (value === null || value === undefined) return "–";
  return Number(value).toPrecision(digits || 3).replace(/\.?0+(e|$)/, "$1");
}

function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function jobRow(job, prefix) {
  const row = text("tr", null, { "data-job": job.id, "data-status": job.status });
  const idCell = text("td");
  const link = text("a", null, { href: `${prefix}/jobs/${job.id}` });
  link.appendChild(text("code", job.id.slice(0, 8)));
  idCell.appendChild(link);
  row.appendChild(idCell);
  row.appendChild(text("td", job.model));
  row.appendChild(text("td", job.method === "sefa" ? job.method : `${job.method} / ${job.distance}`));
  const status = text("td");
  status.appendChild(text("span", job.status, { class: `status status-${job.status}` }));
  row.appendChild(status);
  const progress = text("td");
  const bar = text("progress", `${job.percent} %`, { max: "100", value: String(job.percent),
    "aria-label": `progress of job ${job.id.slice(0, 8)}` });
  progress.appendChild(bar);
  progress.appendChild(text("span", `${job.done}/${job.planned}` + (job.failed ? `, ${job.failed} failed` : ""), { class: "count" }));
  row.appendChild(progress);
  row.appendChild(text("td", job.rate_per_s ? `${fmtNumber(job.rate_per_s, 3)} codes/s` : "–"));
  row.appendChild(text("td", job.terminal ? "–" : fmtDuration(job.eta_s)));
  const created = text("td");
  created.appendChild(text("time", job.created_at.replace("T", " "), { datetime: job.created_at }));
  row.appendChild(created);
  return row;
}

async function fetchJson(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (response.redirected || response.status === 401) { window.location.reload(); return null; }
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

function liveJobsTable(table) {
  const prefix = table.dataset.prefix;
  const body = table.querySelector("tbody");
  const empty = document.getElementById("jobs-empty");
  const stamp = document.getElementById("jobs-updated");
  async function refresh() {
    try {
      const data = await fetchJson(table.dataset.source);
      if (data) {
        body.replaceChildren(...data.jobs.map((job) => jobRow(job, prefix)));
        if (empty) empty.hidden = data.jobs.length > 0;
        if (stamp) stamp.textContent = `Live: updated ${new Date().toLocaleTimeString()}.`;
      }
    } catch (error) {
      if (stamp) stamp.textContent = `Could not refresh (${error.message}); retrying.`;
    }
    setTimeout(refresh, REFRESH_MS);
  }
  setTimeout(refresh, REFRESH_MS);
}

function liveJob(section) {
  async function refresh() {
    let job = null;
    try { job = await fetchJson(section.dataset.source); } catch (error) { /* retried below */ }
    if (job) {
      const status = document.getElementById("job-status");
      status.textContent = job.status;
      status.className = `status status-${job.status}`;
      const bar = document.getElementById("job-progress");
      bar.value = job.percent;
      bar.textContent = `${job.percent} %`;
      document.getElementById("job-count").textContent = `${job.done}/${job.planned}, ${job.failed} failed`;
      document.getElementById("job-rate").textContent = job.rate_per_s ? `${fmtNumber(job.rate_per_s, 3)} codes/s` : "–";
      document.getElementById("job-eta").textContent = job.terminal ? "–" : fmtDuration(job.eta_s);
      if (job.terminal) { window.location.reload(); return; } // shows spectra links and failures
    }
    setTimeout(refresh, REFRESH_MS);
  }
  const status = document.getElementById("job-status");
  if (!["succeeded", "failed", "cancelled", "refused"].includes(status.textContent.trim())) setTimeout(refresh, REFRESH_MS);
}

const PLOT_CONFIG = { responsive: true, displaylogo: false, toImageButtonOptions: { format: "svg" } };

function drawFigure(node, spec) {
  window.Plotly.react(node, spec.data, spec.layout, PLOT_CONFIG);
}

function spectrumWithControls(node) {
  const variants = JSON.parse(document.getElementById(node.dataset.variants).textContent);
  const controls = document.querySelector(`[data-controls="${node.id}"]`);
  function redraw() {
    // One normalisation rule, computed on the server (THE bands of the result document); the
    // default checked is the one the PNG uses.
    const chosen = controls && controls.querySelector(`input[name="${node.id}-normalise"]:checked`);
    const normalisation = chosen ? chosen.value : node.dataset.default || "none";
    const scale = controls ? controls.querySelector(`input[name="${node.id}-scale"]:checked`).value : "log";
    const spec = structuredClone(variants[normalisation]);
    spec.layout.yaxis.type = scale;
    drawFigure(node, spec);
    node.dataset.drawn = normalisation;
    node.dataset.scale = scale;
  }
  if (controls) controls.addEventListener("change", redraw);
  redraw();
}

document.addEventListener("DOMContentLoaded", () => {
  const table = document.getElementById("jobs-table");
  if (table) liveJobsTable(table);
  const job = document.getElementById("job-live");
  if (job) liveJob(job);
  if (window.Plotly) {
    document.querySelectorAll("[data-variants]").forEach(spectrumWithControls);
    document.querySelectorAll("[data-figure]").forEach((node) => {
      drawFigure(node, JSON.parse(document.getElementById(node.dataset.figure).textContent));
    });
  }
});
