// Trajectory browser. Model-written text is hostile: it only ever enters the DOM through
// textContent (el() below), never innerHTML, so markup in a thought stays text.
(function () {
  "use strict";
  var dataEl = document.getElementById("traj-data");
  var items = dataEl ? JSON.parse(dataEl.textContent) : [];
  var byId = {};
  items.forEach(function (t) { byId[t.id] = t; });

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function badge(text, cls) { return el("span", "badge " + (cls || ""), text); }

  var list = document.getElementById("traj-list");
  var detail = document.getElementById("traj-detail");
  var filter = document.getElementById("traj-filter");
  var search = document.getElementById("traj-search");
  var count = document.getElementById("traj-count");
  if (!list || !detail) { document.body.dataset.ready = "1"; return; }

  function validCount(t) { return t.corrections.filter(function (c) { return c.valid; }).length; }
  function matches(t) {
    var f = filter.value;
    if (f === "corrected" && t.corrections.length === 0) return false;
    if (f === "hard" && !t.hard_to_teach) return false;
    if (f === "uncorrected" && (t.corrections.length > 0 || t.hard_to_teach)) return false;
    var q = search.value.trim().toLowerCase();
    if (!q) return true;
    var hay = [t.id, t.task_id, t.question, t.answer, t.final_answer || "", t.source].join("\n").toLowerCase();
    return hay.indexOf(q) >= 0;
  }
  // The hash holds shareable state: #traj=ID&filter=corrected&q=text (each part optional).
  function hashParams() { return new URLSearchParams(window.location.hash.replace(/^#/, "")); }
  function selectedId() { return hashParams().get("traj"); }
  function applyHashControls() {
    var p = hashParams();
    var f = p.get("filter");
    if (Array.prototype.some.call(filter.options, function (o) { return o.value === f; })) filter.value = f;
    if (p.get("q") !== null) search.value = p.get("q");
  }

  function renderList() {
    list.textContent = "";
    var shown = items.filter(matches);
    count.textContent = shown.length + " of " + items.length + " shown";
    var sel = selectedId();
    shown.forEach(function (t) {
      var li = el("li");
      var a = el("a");
      a.href = "#traj=" + encodeURIComponent(t.id);
      a.dataset.id = t.id;
      if (t.id === sel) a.className = "active";
      a.appendChild(badge(t.outcome, t.outcome));
      if (t.corrections.length) a.appendChild(badge(t.corrections.length + " corr.", "corr"));
      if (t.hard_to_teach) a.appendChild(badge("hard", "hard"));
      a.appendChild(el("span", null, t.task_id));
      a.appendChild(el("span", "q", t.question));
      li.appendChild(a);
      list.appendChild(li);
    });
    return shown;
  }

  function stepCard(s, index, extraCls, label) {
    var card = el("div", "step " + (s.origin === "teacher" ? "teacher" : "student") + (extraCls ? " " + extraCls : ""));
    card.dataset.origin = s.origin;
    var hd = el("div", "hd");
    if (index !== null) hd.appendChild(el("b", null, "Step " + index + " "));
    hd.appendChild(badge(s.kind));
    hd.appendChild(badge(s.origin, s.origin));
    if (label) hd.appendChild(badge(label));
    if (s.error) hd.appendChild(badge("error: " + s.error, "error"));
    (s.format_errors || []).forEach(function (f) { hd.appendChild(badge(f, "fmt")); });
    card.appendChild(hd);
    if (s.thought) card.appendChild(el("div", "thought", s.thought));
    if (s.code) card.appendChild(el("pre", "code", s.code));
    if (s.kind !== "plan" || (s.observation && s.observation !== "None")) card.appendChild(el("pre", "obs", s.observation));
    if (s.final_answer !== null && s.final_answer !== undefined) {
      var fa = el("div", "thought");
      fa.appendChild(el("b", null, "final answer: "));
      fa.appendChild(document.createTextNode(s.final_answer));
      card.appendChild(fa);
    }
    return card;
  }

  function renderDetail(t) {
    detail.textContent = "";
    if (!t) {
      var sel = selectedId();
      detail.appendChild(el("p", "note", sel ? "Trajectory " + sel + " is not in this report." : "No trajectory to show."));
      return;
    }
    var h = el("h3");
    h.appendChild(el("span", null, t.task_id + " "));
    h.appendChild(badge(t.outcome, t.outcome));
    h.appendChild(badge("score " + Number(t.score).toFixed(2)));
    if (t.hard_to_teach) h.appendChild(badge("hard to teach", "hard"));
    if (t.policy) h.appendChild(badge(t.policy));
    detail.appendChild(h);
    var qa = el("div", "qa");
    qa.appendChild(el("span", "lbl", "question"));
    qa.appendChild(document.createTextNode(t.question));
    detail.appendChild(qa);
    var ans = el("div", "qa");
    ans.style.marginTop = "6px";
    ans.appendChild(el("span", "lbl", "reference answer / final answer"));
    ans.appendChild(document.createTextNode(t.answer + "   ⟶   " + (t.final_answer === null ? "(none)" : t.final_answer)));
    detail.appendChild(ans);

    if (t.corrections.length) {
      detail.appendChild(el("h3", null, "Teacher corrections (" + validCount(t) + " valid of " + t.corrections.length + ")"));
      t.corrections.forEach(function (c, j) {
        var box = el("div", "correction" + (c.valid ? "" : " invalid"));
        var ch = el("div", "hd");
        ch.appendChild(el("b", null, "Correction " + (j + 1) + " at step " + c.step_index + " "));
        if (!c.valid) ch.appendChild(badge("invalid: cut by a later correction", "invalid"));
        if (c.teacher_tokens) ch.appendChild(badge(c.teacher_tokens + " teacher tokens"));
        box.appendChild(ch);
        if (c.analysis) box.appendChild(el("div", "analysis", c.analysis));
        if (c.suggestion && c.suggestion !== c.analysis) box.appendChild(el("div", "analysis", c.suggestion));
        var pair = el("div", "pair");
        var left = el("div"); left.appendChild(el("div", "legend", "Student's step (rejected)"));
        left.appendChild(stepCard(c.rejected, c.step_index, "rejected", "wrong step"));
        var right = el("div"); right.appendChild(el("div", "legend", "Teacher's step (chosen)"));
        right.appendChild(stepCard(c.chosen, c.step_index, "", "correction"));
        pair.appendChild(left); pair.appendChild(right);
        box.appendChild(pair);
        detail.appendChild(box);
      });
    }

    var valid = t.corrections.filter(function (c) { return c.valid; }).map(function (c) { return c.step_index; });
    var last = valid.length ? Math.max.apply(null, valid) : -1;
    var first = valid.length ? Math.min.apply(null, valid) : -1;
    detail.appendChild(el("h3", null, "Final trajectory (" + t.steps.length + " steps)"));
    detail.appendChild(el("div", "legend", "Blue: the student's steps; orange: the teacher's. Steps after the last correction are the student's continuation."));
    t.steps.forEach(function (s, i) {
      var label = "";
      if (valid.indexOf(i) >= 0 && s.origin === "teacher") label = "teacher correction";
      else if (last >= 0 && i > last) label = "continuation";
      else if (first >= 0 && i < first) label = "verified prefix";
      detail.appendChild(stepCard(s, i, "", label));
    });
  }

  function update() {
    var shown = renderList();
    var sel = selectedId();
    var t = sel !== null ? byId[sel] : shown[0];
    renderDetail(t || null);
    if (t) {
      var a = list.querySelector("a.active");
      if (a && a.scrollIntoView && sel !== null) a.scrollIntoView({ block: "nearest" });
    }
  }

  filter.addEventListener("change", update);
  search.addEventListener("input", update);
  window.addEventListener("hashchange", function () { applyHashControls(); update(); });
  applyHashControls();
  update();
  document.body.dataset.ready = "1";
})();
