// flagedge admin: the page's only script. It posts to the JSON API with this session's
// CSRF token, and builds every piece of flag text with textContent (never innerHTML), so
// a flag or variant named like markup stays text.
"use strict";
(() => {
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.content : "";
  const env = document.body.dataset.env || "";
  const notice = document.getElementById("notice");
  const base = `/api/v1/envs/${encodeURIComponent(env)}`;

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function say(text, bad) {
    if (!notice) return;
    notice.textContent = text;
    notice.hidden = false;
    notice.classList.toggle("bad", Boolean(bad));
  }

  async function api(method, path, body) {
    let response;
    try {
      response = await fetch(base + path, {
        method,
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      return { ok: false, status: 0, error: `the admin service did not answer (${err})` };
    }
    let data;
    try {
      data = await response.json();
    } catch (err) {
      data = { ok: false, error: `HTTP ${response.status}` };
    }
    data.status = response.status;
    return data;
  }

  function problemList(target, data) {
    target.replaceChildren();
    const problems = data.problems || [];
    if (data.error) target.append(el("p", data.error, "error"));
    if (!problems.length) return;
    const list = el("ul", null, "problems");
    for (const p of problems) {
      const item = el("li");
      item.append(el("code", p.path || "(document)"), document.createTextNode(": " + p.message));
      list.append(item);
    }
    target.append(list);
  }

  // -- environment switcher -----------------------------------------------------------------
  const envSwitch = document.querySelector("[data-env-switch] select");
  if (envSwitch) {
    envSwitch.addEventListener("change", () => {
      const page = location.pathname.split("/")[3] || "flags";
      location.assign(`/envs/${encodeURIComponent(envSwitch.value)}/${page === "flags" ? "flags" : page}`);
    });
  }

  // -- flags page: instant filtering --------------------------------------------------------
  const filter = document.querySelector("form[data-filter]");
  if (filter) {
    const q = filter.querySelector('input[name="q"]');
    const kind = filter.querySelector('select[name="kind"]');
    const rows = Array.from(document.querySelectorAll("[data-flag]"));
    const count = filter.querySelector("[data-count]");
    const apply = () => {
      const text = q.value.trim().toLowerCase();
      let shown = 0;
      for (const row of rows) {
        const hit = (!kind.value || row.dataset.kind === kind.value) &&
          (!text || row.textContent.toLowerCase().includes(text));
        row.hidden = !hit;
        if (hit) shown += 1;
      }
      if (count) count.textContent = `${shown} shown`;
    };
    q.addEventListener("input", apply);
    kind.addEventListener("change", apply);
  }

  // -- live edges -------------------------------------------------------------------------------
  function edgeRow(e, target) {
    const row = el("tr");
    row.dataset.edge = e.id;
    row.dataset.version = String(e.version);
    const done = target === undefined ? e.converged : e.version >= target;
    row.dataset.converged = done ? "yes" : "no";
    row.append(el("td", e.id));
    if (target === undefined) row.append(el("td", e.host));
    row.append(el("td", e.version));
    if (target === undefined) {
      row.append(el("td", new Date(e.applied_at * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC"));
      let state = e.converged ? "converged" : e.ahead_of_redis ? "ahead of Redis" : `${e.behind} behind`;
      if (e.stale) state += " STALE";
      if (e.error) state += ` error: ${e.error}`;
      row.append(el("td", state));
    } else {
      row.append(el("td", done ? "applied" : "applying…"));
    }
    return row;
  }

  function watchEdges(onUpdate) {
    const source = new EventSource(`${base}/edges/stream`);
    source.addEventListener("edges", (event) => onUpdate(JSON.parse(event.data)));
    return source;
  }

  const live = document.getElementById("edges-live");
  if (live) {
    const body = live.querySelector("[data-edges]");
    const error = document.querySelector("[data-edges-error]");
    watchEdges((data) => {
      if (!data.ok) {
        error.textContent = `Redis is unreachable: ${data.error}`;
        error.hidden = false;
        return;
      }
      error.hidden = true;
      document.querySelector("[data-redis-version]").textContent = String(data.version);
      document.querySelector("[data-converged]").textContent = data.converged ? "all converged" : "NOT converged";
      body.replaceChildren(...(data.edges.length ? data.edges.map((e) => edgeRow(e)) : [el("tr", "No live edges.")]));
    });
  }

  // -- a flag's page --------------------------------------------------------------------------
  const flag = document.getElementById("flag");
  if (!flag) return;
  const key = flag.dataset.key;
  const flagPath = `/flags/${encodeURIComponent(key)}`;
  const version = () => Number(flag.dataset.version);
  const panels = Array.from(document.querySelectorAll(".panel"));
  const show = (id) => panels.forEach((p) => { p.hidden = p.id !== id; });
  const hideAll = () => panels.forEach((p) => { p.hidden = true; });
  let pendingLists = null;
  let pendingDefinition = null;

  function converge(target, summary) {
    const panel = document.getElementById("converge");
    if (!panel) return;
    panel.hidden = false;
    panel.querySelector("[data-target]").textContent = String(target);
    const body = panel.querySelector("[data-edges]");
    const source = watchEdges((data) => {
      if (!data.ok) return;
      body.replaceChildren(...data.edges.map((e) => edgeRow(e, target)));
      if (data.edges.every((e) => e.version >= target)) {
        say(`${summary}: every edge (${data.edges.length}) has applied version ${target}`);
        source.close();
      }
    });
  }

  const pending = sessionStorage.getItem("flagedge-pending");
  if (pending) {
    sessionStorage.removeItem("flagedge-pending");
    const done = JSON.parse(pending);
    if (done.key === key) {
      say(`${done.summary}: version ${done.version}`);
      converge(done.version, done.summary);
    }
  }

  async function write(method, path, body) {
    const data = await api(method, path, body);
    if (!data.ok) {
      say(data.error || `refused (HTTP ${data.status})`, true);
      return;
    }
    if (!data.changed) {
      say(data.message || "nothing to change");
      hideAll();
      return;
    }
    sessionStorage.setItem("flagedge-pending", JSON.stringify({ key, version: data.version, summary: data.summary }));
    location.reload();
  }

  const percentage = document.querySelector('input[name="percentage"]');
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    const action = button.dataset.action;
    if (button.dataset.step !== undefined && percentage) {
      percentage.value = button.dataset.step;
      return;
    }
    if (button.dataset.remove !== undefined) {
      const pressed = button.getAttribute("aria-pressed") === "true";
      button.setAttribute("aria-pressed", pressed ? "false" : "true");
      button.closest("li").classList.toggle("removing", !pressed);
      return;
    }
    if (action === "kill") show("kill-panel");
    else if (action === "restore") show("restore-panel");
    else if (action === "rollout") {
      document.querySelector("[data-rollout-text]").textContent =
        `Serve the rolled-out variant to ${percentage.value}% of targeting keys in ${env}.`;
      show("rollout-panel");
    } else if (action === "cancel") hideAll();
    else if (action === "confirm") {
      const op = button.dataset.op;
      button.disabled = true;
      try {
        if (op === "kill") {
          const variant = document.querySelector('select[name="variant"]').value;
          await write("POST", `${flagPath}/kill`, { variant: variant || null, version: version() });
        } else if (op === "restore") {
          await write("POST", `${flagPath}/restore`, { version: version() });
        } else if (op === "rollout") {
          await write("POST", `${flagPath}/rollout`, { percent: Number(percentage.value), version: version() });
        } else if (op === "lists" && pendingLists) {
          await write("POST", `${flagPath}/lists`, { edits: pendingLists, version: version() });
        } else if (op === "edit" && pendingDefinition !== null) {
          await write("PUT", flagPath, { definition: pendingDefinition, version: version() });
        }
      } finally {
        button.disabled = false;
      }
    } else if (action === "preview-list") {
      const form = button.closest("form");
      const add = form.querySelector('input[name="add"]').value.split(",").map((v) => v.trim()).filter(Boolean);
      const remove = Array.from(form.querySelectorAll('button[aria-pressed="true"]')).map((b) => JSON.parse(b.dataset.remove));
      pendingLists = [{ path: form.dataset.listPath, add, remove }];
      const data = await api("POST", `${flagPath}/validate`, { edits: pendingLists });
      const panel = document.getElementById("list-panel");
      problemList(panel.querySelector("[data-problems]"), data.valid ? {} : data);
      panel.querySelector("[data-diff]").textContent = data.diff || "(no change)";
      panel.querySelector('[data-action="confirm"]').hidden = !data.valid || !data.diff;
      show("list-panel");
    } else if (action === "validate") {
      const panel = document.getElementById("edit-panel");
      const text = document.getElementById("definition").value;
      let definition;
      try {
        definition = JSON.parse(text);
      } catch (err) {
        problemList(panel.querySelector("[data-problems]"), { problems: [{ path: "", message: `not JSON: ${err.message}` }] });
        panel.querySelector("[data-diff]").textContent = "";
        panel.querySelector('[data-action="confirm"]').hidden = true;
        show("edit-panel");
        return;
      }
      const data = await api("POST", `${flagPath}/validate`, { definition });
      pendingDefinition = data.valid ? definition : null;
      problemList(panel.querySelector("[data-problems]"), data.valid ? {} : data);
      panel.querySelector("[data-diff]").textContent = data.diff || "(no change)";
      panel.querySelector('[data-action="confirm"]').hidden = !data.valid || !data.diff;
      show("edit-panel");
    } else if (action === "explain") {
      await explain();
    }
  });

  // -- try a context ----------------------------------------------------------------------
  const contextBox = document.getElementById("context");
  const recent = document.querySelector('select[name="recent"]');
  const recentKey = "flagedge-recent-contexts";
  const recentList = () => { try { return JSON.parse(localStorage.getItem(recentKey) || "[]"); } catch (err) { return []; } };
  function fillRecent() {
    if (!recent) return;
    const first = recent.options[0];
    recent.replaceChildren(first, ...recentList().map((text) => { const o = el("option", text); o.value = text; return o; }));
  }
  fillRecent();
  if (recent) recent.addEventListener("change", () => { if (recent.value) contextBox.value = recent.value; });

  async function explain() {
    const out = document.querySelector("[data-explain]");
    let context;
    try {
      context = JSON.parse(contextBox.value || "{}");
    } catch (err) {
      problemList(out, { problems: [{ path: "context", message: `not JSON: ${err.message}` }] });
      return;
    }
    const data = await api("POST", `${flagPath}/explain`, { context });
    out.replaceChildren();
    if (data.status !== 200) {
      problemList(out, data);
      return;
    }
    const text = JSON.stringify(context);
    localStorage.setItem(recentKey, JSON.stringify([text, ...recentList().filter((t) => t !== text)].slice(0, 10)));
    fillRecent();
    const facts = el("dl", null, "facts");
    const fact = (name, value) => { facts.append(el("dt", name), el("dd", value)); };
    fact("Value", data.variant === null ? "(the caller's default)" : JSON.stringify(data.value));
    fact("Variant", data.variant === null ? "-" : data.variant);
    fact("Reason", data.reason + (data.errorCode ? ` (${data.errorCode}: ${data.errorMessage})` : ""));
    out.append(facts, el("p", `Because ${data.summary}.`, "because"));
    if (data.steps.length) {
      const steps = el("ol", null, "steps");
      for (const s of data.steps) {
        const item = el("li", null, s.result ? "matched" : "missed");
        item.append(el("span", s.result ? "matched" : "no", "mark"), document.createTextNode(` ${s.condition} → ${s.then}`));
        steps.append(item);
      }
      out.append(steps);
    }
    for (const b of data.buckets) {
      const p = el("p", null, "bucket");
      if (b.bucket === null) {
        p.textContent = `Bucketing by ${b.by}: no bucket (the value is missing or unusable).`;
      } else {
        const ranges = b.boundaries.map((x) => `${x.variant} [${x.from}, ${x.to})`).join(", ");
        p.textContent = `Bucketing by ${b.by}: bucket ${b.bucket} of ${b.total} → ${b.chosen === null ? "not in it" : b.chosen}. Boundaries: ${ranges}.`;
      }
      out.append(p);
    }
  }
})();
